import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { build, type TestApp } from '../helper.js'
import { loadTree, moduleCalls, resources, variables, type TfModule } from './hcl.js'

/**
 * The client address the application records behind each load balancer, with TRUST_PROXY as the
 * Terraform environments set it. The header shapes are the load balancers' documented ones
 * (terraform/README.md, "Client addresses"): the AWS ALB appends the address that connected to it to
 * X-Forwarded-For and connects from its nodes in the public subnets; Google's external Application
 * Load Balancer appends "<client>,<its own address>" and Cloud Run hands the request to the container
 * from a link-local address. What the application believes is observable in the auth.failed audit
 * event an unauthenticated GET /api/v1/agents writes.
 */

const tree = await loadTree(join(projectRoot, 'terraform'))
const tf = (dir: string): TfModule => {
  const found = tree.get(dir)
  if (found === undefined) throw new Error(`terraform/${dir} is missing`)
  return found
}
const defaultOf = (dir: string, name: string): unknown => variables(tf(dir)).find((entry) => entry.name === name)?.block.default

/** The TRUST_PROXY expression in an environment's call of the agentidp module. */
function trustProxyExpression (env: string): string {
  const environment = moduleCalls(tf(env)).find((call) => call.name === 'agentidp')?.args.environment
  const match = /^\s*TRUST_PROXY\s*=\s*(.+?)\s*$/m.exec(String(environment))
  if (match === null) throw new Error(`${env} sets no TRUST_PROXY`)
  return match[1]
}

/** Terraform's cidrsubnet() for IPv4. */
function cidrsubnet (prefix: string, newbits: number, netnum: number): string {
  const [address, length] = prefix.split('/')
  const bits = Number(length) + newbits
  const base = address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0)
  const network = base - (base % 2 ** (32 - Number(length))) + netnum * 2 ** (32 - bits)
  return `${[24, 16, 8, 0].map((shift) => Math.floor(network / 2 ** shift) % 256).join('.')}/${bits}`
}

/**
 * AWS: the public subnets' CIDRs, computed from the variables' defaults. The expressions are
 * checked first, so a change to them fails here instead of testing a value the environment no
 * longer sets.
 */
function awsTrustProxy (): string {
  const env = 'environments/aws'
  const expression = trustProxyExpression(env)
  if (expression !== 'join(",", aws_subnet.public[*].cidr_block)') throw new Error(`${env}: TRUST_PROXY is now ${expression}; update this test`)
  const subnet = resources(tf(env), 'aws_subnet').get('public')
  const carve = /^\$\{cidrsubnet\(var\.vpc_cidr, (\d+), count\.index\)\}$/.exec(String(subnet?.cidr_block))
  if (carve === null || subnet?.count !== '${var.az_count}') throw new Error(`${env}: the public subnets are carved differently now; update this test`)
  const count = Number(defaultOf(env, 'az_count'))
  return Array.from({ length: count }, (_, index) => cidrsubnet(String(defaultOf(env, 'vpc_cidr')), Number(carve[1]), index)).join(',')
}

/** Stands for the global address Terraform allocates to the GCP load balancer (known after apply). */
const GCP_LB_ADDRESS = '198.51.100.10'

/** GCP: Cloud Run's front-end range(s) and the load balancer's own address. */
function gcpTrustProxy (): string {
  const env = 'environments/gcp'
  const expression = trustProxyExpression(env)
  if (expression !== 'join(",", concat(var.cloud_run_proxy_cidrs, [module.lb.ip_address]))') throw new Error(`${env}: TRUST_PROXY is now ${expression}; update this test`)
  return [...defaultOf(env, 'cloud_run_proxy_cidrs') as string[], GCP_LB_ADDRESS].join(',')
}

interface Arrival {
  /** the socket peer the container sees */
  remoteAddress: string
  /** X-Forwarded-For as it reaches the container; absent when none is sent */
  forwardedFor?: string
}

let requests = 0
/** Sends an unauthenticated request as it arrives from the load balancer; answers the address recorded for it. */
async function recordedAddress (app: TestApp, db: pg.Client, arrival: Arrival): Promise<{ status: number, address: string | null }> {
  requests += 1
  // a user agent of its own finds this request's event among the others
  const userAgent = `trust-proxy-test/${requests}`
  const response = await app.inject({
    method: 'GET',
    url: '/api/v1/agents',
    remoteAddress: arrival.remoteAddress,
    headers: { 'user-agent': userAgent, ...(arrival.forwardedFor === undefined ? {} : { 'x-forwarded-for': arrival.forwardedFor }) }
  })
  const { rows } = await db.query<{ address: string | null }>(
    "SELECT host(ip_address) AS address FROM audit_events WHERE action = 'auth.failed' AND user_agent = $1", [userAgent])
  return { status: response.statusCode, address: rows[0]?.address ?? null }
}

async function appWith (t: { teardown (fn: () => unknown): void }, trustProxy: string): Promise<{ app: TestApp, db: pg.Client }> {
  const app = await build(t, { env: { TRUST_PROXY: trustProxy } })
  const db = new pg.Client({ connectionString: app.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  return { app, db }
}

t.test('the environments set the TRUST_PROXY this file tests', async (t) => {
  t.equal(awsTrustProxy(), '10.40.0.0/20,10.40.16.0/20', 'AWS: the two public subnets of the default VPC')
  t.equal(gcpTrustProxy(), `169.254.0.0/16,${GCP_LB_ADDRESS}`, "GCP: Cloud Run's link-local front end and the load balancer")
  t.equal(cidrsubnet('10.40.0.0/16', 4, 8), '10.40.128.0/20', 'cidrsubnet agrees with Terraform on the first private subnet')
})

t.test('behind the AWS ALB, the recorded address is the one the ALB appended', async (t) => {
  const { app, db } = await appWith(t, awsTrustProxy())
  // ALB nodes have addresses in the public subnets, one subnet per availability zone
  const albNodeA = '10.40.7.201'
  const albNodeB = '10.40.22.14'

  t.same(await recordedAddress(app, db, { remoteAddress: albNodeA, forwardedFor: '203.0.113.7' }),
    { status: 401, address: '203.0.113.7' }, 'a client that sent no X-Forwarded-For')
  t.same(await recordedAddress(app, db, { remoteAddress: albNodeB, forwardedFor: '198.51.100.77' }),
    { status: 401, address: '198.51.100.77' }, 'through a node in the other availability zone')
  t.same(await recordedAddress(app, db, { remoteAddress: albNodeA, forwardedFor: '2001:db8:4006:812::200e' }),
    { status: 401, address: '2001:db8:4006:812::200e' }, 'an IPv6 client (dual-stack ALB)')

  t.same(await recordedAddress(app, db, { remoteAddress: albNodeA, forwardedFor: '192.0.2.44, 203.0.113.7' }),
    { status: 401, address: '203.0.113.7' }, 'spoofing: an address the client put in front does not win')
  t.same(await recordedAddress(app, db, { remoteAddress: albNodeA, forwardedFor: '10.40.7.5, 203.0.113.7' }),
    { status: 401, address: '203.0.113.7' }, 'spoofing: not even one inside a trusted subnet')
  t.same(await recordedAddress(app, db, { remoteAddress: albNodeA }),
    { status: 401, address: albNodeA }, "without the header (the ALB's own health checks) the node itself")

  t.same(await recordedAddress(app, db, { remoteAddress: '10.40.131.9', forwardedFor: '203.0.113.7' }),
    { status: 401, address: '10.40.131.9' }, 'a peer in a private subnet is no proxy: its X-Forwarded-For is ignored')
})

// Shapes the Terraform keeps away (enable_xff_client_port = false, xff_header_processing_mode =
// "append"), which the product must still survive: an entry that is not a bare address used to
// become request.ip and fail the audit insert with a 500 (issue 11, defect 4; lib/forwarded.ts).
t.test('behind the ALB, entries that are not bare addresses are not taken for the client', async (t) => {
  const { app, db } = await appWith(t, awsTrustProxy())
  t.same(await recordedAddress(app, db, { remoteAddress: '10.40.7.201', forwardedFor: '203.0.113.7:51234' }),
    { status: 401, address: '203.0.113.7' }, 'the client port (enable_xff_client_port = true) is dropped')
  t.same(await recordedAddress(app, db, { remoteAddress: '10.40.7.201', forwardedFor: '[2001:db8::7]:51234' }),
    { status: 401, address: '2001:db8::7' }, 'also after an IPv6 address')
  // which address to record then (none, or the proxy's) is the product's choice; failing is not
  t.equal((await recordedAddress(app, db, { remoteAddress: '10.40.7.201', forwardedFor: 'unknown' })).status,
    401, '"unknown" passed on by a preserving proxy does not fail the request')
})

t.test('behind the GCP load balancer and Cloud Run, the recorded address is the one before the load balancer\'s', async (t) => {
  const { app, db } = await appWith(t, gcpTrustProxy())
  // the container's socket peer on Cloud Run is a link-local address of its front end
  const cloudRun = '169.254.169.126'
  const lb = GCP_LB_ADDRESS

  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: `203.0.113.7,${lb}` }),
    { status: 401, address: '203.0.113.7' }, 'a client that sent no X-Forwarded-For: "<client>,<lb>"')
  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: `2001:db8:4006:812::200e,${lb}` }),
    { status: 401, address: '2001:db8:4006:812::200e' }, 'an IPv6 client')
  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: `192.0.2.1,203.0.113.7,${lb}` }),
    { status: 401, address: '203.0.113.7' }, 'spoofing: "<supplied>,<client>,<lb>" records the client, not the supplied value')
  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: `${lb},203.0.113.7,${lb}` }),
    { status: 401, address: '203.0.113.7' }, "spoofing: not even when the client sends the load balancer's address")
  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: `203.0.113.7,${lb},203.0.113.7` }),
    { status: 401, address: '203.0.113.7' }, 'the shape seen in 2022, when Cloud Run appended the client a second time')

  // Cloud Run's own URL answers only callers inside the project's network (ingress: internal and load balancer)
  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: '10.50.0.12' }),
    { status: 401, address: '10.50.0.12' }, 'a caller inside the network reaching Cloud Run directly')
  t.same(await recordedAddress(app, db, { remoteAddress: cloudRun, forwardedFor: '203.0.113.99, 10.50.0.12' }),
    { status: 401, address: '10.50.0.12' }, 'spoofing by such a caller does not win either')
})

t.test("without the load balancer's address in TRUST_PROXY, every client would look like the load balancer", async (t) => {
  // the value before the load balancer's address was added: why gcpTrustProxy() carries it
  const { app, db } = await appWith(t, (defaultOf('environments/gcp', 'cloud_run_proxy_cidrs') as string[]).join(','))
  t.same(await recordedAddress(app, db, { remoteAddress: '169.254.169.126', forwardedFor: `203.0.113.7,${GCP_LB_ADDRESS}` }),
    { status: 401, address: GCP_LB_ADDRESS })
})

import t from 'tap'
import { withChallengeParameter } from '../../lib/www-authenticate.js'
import { protectedResourceMetadataUrl } from '../../lib/protected-resource.js'

const URL_ = 'https://idp.example/.well-known/oauth-protected-resource'
const add = (header: string | undefined) => withChallengeParameter(header, ['Bearer', 'DPoP'], 'resource_metadata', URL_)

t.test('a lone scheme takes the parameter after a space; a challenge with parameters after a comma', async (t) => {
  t.equal(add('Bearer'), `Bearer resource_metadata="${URL_}"`)
  t.equal(add('Bearer error="invalid_token", error_description="the access token has expired"'),
    `Bearer error="invalid_token", error_description="the access token has expired", resource_metadata="${URL_}"`)
})

t.test('commas and escaped quotes inside quoted strings do not split the challenge', async (t) => {
  t.equal(add('Bearer error="invalid_token", error_description="a, b \\" c, d"'),
    `Bearer error="invalid_token", error_description="a, b \\" c, d", resource_metadata="${URL_}"`)
})

t.test('every challenge of a listed scheme gets it, others are left alone; a parameter already there is kept', async (t) => {
  t.equal(add('Basic realm="agentidp", DPoP algs="ES256 RS256", bearer error="invalid_token"'),
    `Basic realm="agentidp", DPoP algs="ES256 RS256", resource_metadata="${URL_}", bearer error="invalid_token", resource_metadata="${URL_}"`)
  t.equal(add('Bearer resource_metadata="https://other.example/"'), 'Bearer resource_metadata="https://other.example/"')
  t.equal(add('Basic realm="x"'), 'Basic realm="x"')
})

t.test('no header at all: a challenge of the first scheme', async (t) => {
  t.equal(add(undefined), `Bearer resource_metadata="${URL_}"`)
})

t.test('the metadata URL is the issuer followed by the well-known path', async (t) => {
  t.equal(protectedResourceMetadataUrl('https://idp.example'), URL_)
  t.equal(protectedResourceMetadataUrl('https://idp.example/'), URL_)
  t.equal(protectedResourceMetadataUrl('https://idp.example/tenant-a'), 'https://idp.example/tenant-a/.well-known/oauth-protected-resource')
})

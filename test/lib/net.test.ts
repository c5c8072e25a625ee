import t from 'tap'
import { isPublicAddress } from '../../lib/net.js'

const NOT_PUBLIC: Array<[string, string]> = [
  ['127.0.0.1', 'IPv4 loopback'],
  ['127.255.255.254', 'the far end of 127/8'],
  ['::1', 'IPv6 loopback'],
  ['10.1.2.3', 'private 10/8'],
  ['172.16.0.1', 'private 172.16/12, low end'],
  ['172.31.255.255', 'private 172.16/12, high end'],
  ['192.168.1.1', 'private 192.168/16'],
  ['169.254.169.254', 'link-local: the cloud metadata service'],
  ['fe80::1', 'IPv6 link-local'],
  ['febf:ffff::1', 'the far end of fe80::/10'],
  ['fe80::1%eth0', 'link-local with a zone index'],
  ['100.64.0.1', 'carrier-grade NAT, low end'],
  ['100.127.255.255', 'carrier-grade NAT, high end'],
  ['0.0.0.0', 'IPv4 unspecified'],
  ['0.1.2.3', '0/8'],
  ['::', 'IPv6 unspecified'],
  ['224.0.0.1', 'IPv4 multicast'],
  ['239.255.255.250', 'IPv4 multicast (SSDP)'],
  ['ff02::1', 'IPv6 multicast'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved 240/4'],
  ['192.0.0.8', 'IETF protocol assignments 192.0.0.0/24'],
  ['198.18.0.1', 'benchmarking 198.18/15, low end'],
  ['198.19.255.255', 'benchmarking 198.18/15, high end'],
  ['192.0.2.10', 'documentation TEST-NET-1'],
  ['198.51.100.10', 'documentation TEST-NET-2'],
  ['203.0.113.10', 'documentation TEST-NET-3'],
  ['2001:db8::1', 'IPv6 documentation'],
  ['3fff::1', 'IPv6 documentation (RFC 9637)'],
  ['2001::1', 'Teredo'],
  ['fc00::1', 'unique-local fc00::/7'],
  ['fd12:3456::1', 'unique-local fd00::/8'],
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback, dotted'],
  ['::ffff:7f00:1', 'IPv4-mapped loopback, hex'],
  ['::ffff:169.254.169.254', 'IPv4-mapped metadata service'],
  ['::ffff:10.0.0.1', 'IPv4-mapped private'],
  ['0:0:0:0:0:ffff:c0a8:0101', 'IPv4-mapped private, uncompressed'],
  ['64:ff9b::a9fe:a9fe', 'NAT64 of the metadata service'],
  ['64:ff9b::127.0.0.1', 'NAT64 of loopback'],
  ['2002:7f00:1::', '6to4 of loopback'],
  ['2002:a9fe:a9fe::1', '6to4 of the metadata service'],
  ['::127.0.0.1', 'IPv4-compatible (deprecated)'],
  ['64:ff9b:1::1', 'local-use NAT64'],
  ['not an address', 'not an address'],
  ['', 'empty'],
  ['localhost', 'a host name']
]

const PUBLIC: Array<[string, string]> = [
  ['8.8.8.8', 'a public IPv4'],
  ['1.1.1.1', 'another public IPv4'],
  ['172.15.255.255', 'just below 172.16/12'],
  ['172.32.0.1', 'just above 172.16/12'],
  ['100.63.255.255', 'just below 100.64/10'],
  ['100.128.0.1', 'just above 100.64/10'],
  ['192.0.1.1', 'between 192.0.0.0/24 and TEST-NET-1'],
  ['198.17.255.255', 'just below 198.18/15'],
  ['198.20.0.1', 'just above 198.18/15'],
  ['223.255.255.255', 'just below multicast'],
  ['2606:4700:4700::1111', 'a public IPv6'],
  ['2001:4860:4860::8888', 'a public IPv6 in 2001::/16 but outside 2001::/23'],
  ['::ffff:8.8.8.8', 'IPv4-mapped public address'],
  ['64:ff9b::808:808', 'NAT64 of a public address'],
  ['2002:808:808::1', '6to4 of a public address']
]

t.test('refuses every loopback, private, link-local, special-purpose and wrapped non-public address', async (t) => {
  for (const [address, what] of NOT_PUBLIC) t.equal(isPublicAddress(address), false, `${what}: ${address}`)
})

t.test('accepts globally routable unicast addresses, wrapped ones judged by their IPv4', async (t) => {
  for (const [address, what] of PUBLIC) t.equal(isPublicAddress(address), true, `${what}: ${address}`)
})

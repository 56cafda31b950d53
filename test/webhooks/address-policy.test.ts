// address-policy.ts on its own: IP literals in every spelling, the forbidden ranges (and the IPv4
// addresses IPv6 forms carry), the allow list, and what checkUrl refuses on a URL's face.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AddressPolicy, AllowedHostError, forbiddenRange, isForbiddenAddress, parseAllowedHosts, parseHostAddress } from '../../src/webhooks/address-policy.js';

describe('parseHostAddress', () => {
  test('reads IPv4 in every spelling a URL parser or inet_aton accepts', () => {
    const loopback = { family: 4, address: '127.0.0.1' };
    for (const spelling of ['127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '0X7F.0.1', '127.1', '127.0.1', '0x7f000001', '017700000001', '0x7f.0x0.0x0.0x1', '127.0.0.1.']) {
      assert.deepEqual(parseHostAddress(spelling), loopback, spelling);
    }
    assert.deepEqual(parseHostAddress('0'), { family: 4, address: '0.0.0.0' });
    assert.deepEqual(parseHostAddress('1'), { family: 4, address: '0.0.0.1' });
    assert.deepEqual(parseHostAddress('169.254.43518'), { family: 4, address: '169.254.169.254' });
  });

  test('agrees with WHATWG URL on the IPv4 hosts it normalises', () => {
    for (const spelling of ['2130706433', '0177.0.0.1', '0x7f.1', '127.1', '10.1', '0xa9.0xfe.0xa9.0xfe', '3232235777', '0300.0250.1.1', '1.2.3.4.']) {
      assert.equal(parseHostAddress(spelling)?.address, new URL(`http://${spelling}/`).hostname, spelling);
    }
  });

  test('reads IPv6 bracketed or bare, with embedded IPv4 and zone ids, into RFC 5952 form', () => {
    assert.deepEqual(parseHostAddress('[::1]'), { family: 6, address: '::1' });
    assert.deepEqual(parseHostAddress('::1'), { family: 6, address: '::1' });
    assert.deepEqual(parseHostAddress('0:0:0:0:0:0:0:1'), { family: 6, address: '::1' });
    assert.deepEqual(parseHostAddress('::ffff:127.0.0.1'), { family: 6, address: '::ffff:7f00:1' });
    assert.deepEqual(parseHostAddress('[::FFFF:7F00:1]'), { family: 6, address: '::ffff:7f00:1' });
    assert.deepEqual(parseHostAddress('64:ff9b::127.0.0.1'), { family: 6, address: '64:ff9b::7f00:1' });
    assert.deepEqual(parseHostAddress('::127.0.0.1'), { family: 6, address: '::7f00:1' });
    assert.deepEqual(parseHostAddress('fe80::1%eth0'), { family: 6, address: 'fe80::1' });
    assert.deepEqual(parseHostAddress('2001:db8:0:0:1:0:0:1'), { family: 6, address: '2001:db8::1:0:0:1' });
    assert.deepEqual(parseHostAddress('[2606:4700:4700::1111]'), { family: 6, address: '2606:4700:4700::1111' });
  });

  test('leaves names and malformed addresses alone', () => {
    for (const host of ['example.com', 'localhost', 'evil.test', '', '.', '256.0.0.1', '1.2.3.4.5', '08.0.0.1', '0x7g.1', '1..2', '4294967296', '::1::', '[::1', '1.2.3.4:80', '::ffff:1.2.3']) {
      assert.equal(parseHostAddress(host), undefined, host);
    }
  });
});

describe('isForbiddenAddress', () => {
  test('refuses the special-purpose IPv4 ranges', () => {
    for (const ip of [
      '127.0.0.1', '127.255.255.254', '0.0.0.0', '0.1.2.3', '10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.255',
      '192.168.1.1', '169.254.169.254', '169.254.0.1', '100.64.0.1', '100.127.255.255', '224.0.0.1', '239.255.255.250',
      '240.0.0.1', '255.255.255.255', '198.18.0.1', '198.19.255.255', '192.0.2.1', '198.51.100.1', '203.0.113.1', '192.0.0.8',
    ]) {
      assert.equal(isForbiddenAddress(ip), true, ip);
    }
  });

  test('refuses the special-purpose IPv6 ranges', () => {
    for (const ip of ['::', '::1', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'febf::1', 'fec0::1', 'ff02::1', 'ff05::1:3', '2001:db8::1', '100::1', '64:ff9b:1::1']) {
      assert.equal(isForbiddenAddress(ip), true, ip);
    }
  });

  test('judges IPv6 forms that carry an IPv4 address by that address', () => {
    for (const ip of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe', '::ffff:10.0.0.1', '::ffff:0:7f00:1', '::127.0.0.1', '::a00:1', '64:ff9b::7f00:1', '64:ff9b::169.254.169.254', '2002:7f00:1::1', '2002:c0a8:101::', '2001:0:4136:e378:8000:63bf:80ff:fffe']) {
      assert.equal(isForbiddenAddress(ip), true, ip);
    }
    assert.equal(forbiddenRange('::ffff:169.254.169.254'), 'IPv4-mapped form of 169.254.169.254: link-local (cloud metadata)');
    assert.equal(forbiddenRange('64:ff9b::7f00:1'), 'NAT64 form of 127.0.0.1: loopback');
    for (const ip of ['::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1', '::8.8.8.8']) assert.equal(isForbiddenAddress(ip), false, ip);
  });

  test('lets ordinary public addresses through, next to the edges of the ranges', () => {
    for (const ip of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.15.255.255', '172.32.0.1', '100.63.255.255', '100.128.0.1', '192.169.0.1', '198.17.255.255', '198.20.0.1', '223.255.255.255', '11.0.0.1', '2606:4700:4700::1111', '2a00:1450:4001::200e', 'fbff::1', 'fe7f::1']) {
      assert.equal(isForbiddenAddress(ip), false, ip);
    }
  });

  test('reads the spelling, and fails closed on what is not an address', () => {
    assert.equal(isForbiddenAddress('0x7f.1'), true);
    assert.equal(isForbiddenAddress('2130706433'), true);
    assert.equal(isForbiddenAddress('[::1]'), true);
    assert.equal(isForbiddenAddress('example.com'), true);
    assert.equal(forbiddenRange('169.254.169.254'), 'link-local (cloud metadata)');
    assert.equal(forbiddenRange('255.255.255.255'), 'broadcast');
  });
});

describe('AddressPolicy', () => {
  test('parseAllowedHosts splits WEBHOOK_ALLOWED_HOSTS on commas and drops blanks', () => {
    assert.deepEqual(parseAllowedHosts(' 127.0.0.1, hooks.internal ,,10.0.0.0/8 '), ['127.0.0.1', 'hooks.internal', '10.0.0.0/8']);
    assert.deepEqual(parseAllowedHosts(''), []);
    assert.deepEqual(parseAllowedHosts(undefined), []);
  });

  test('allows forbidden addresses by IP, by CIDR, and (mapped) by their IPv4', () => {
    const policy = new AddressPolicy({ allowHttp: true, allowedHosts: parseAllowedHosts('127.0.0.1,10.0.0.0/8,fd00::/8') });
    assert.equal(policy.checkResolved('evil.test', '127.0.0.1'), undefined);
    assert.equal(policy.checkResolved('evil.test', '::ffff:127.0.0.1'), undefined);
    assert.equal(policy.checkResolved('evil.test', '10.20.30.40'), undefined);
    assert.equal(policy.checkResolved('evil.test', 'fd00::5'), undefined);
    assert.match(policy.checkResolved('evil.test', '127.0.0.2') ?? '', /evil\.test resolves to 127\.0\.0\.2, which is a forbidden address \(loopback\)/);
    assert.match(policy.checkResolved('evil.test', 'fc00::1') ?? '', /unique local/);
    assert.match(policy.checkResolved('evil.test', '64:ff9b::7f00:1') ?? '', /NAT64/, 'NAT64 reaches 127.0.0.1 through a translator: not the allowed host');
    assert.equal(policy.checkResolved('example.com', '93.184.216.34'), undefined, 'public addresses need no allowing');
  });

  test('allows a host name whatever it resolves to, case and trailing dot aside', () => {
    const policy = new AddressPolicy({ allowHttp: false, allowedHosts: ['Hooks.Internal'] });
    assert.equal(policy.checkResolved('hooks.internal', '10.1.2.3'), undefined);
    assert.equal(policy.checkResolved('HOOKS.internal.', '192.168.0.7'), undefined);
    assert.notEqual(policy.checkResolved('other.internal', '10.1.2.3'), undefined);
    assert.notEqual(policy.checkResolved('a.hooks.internal', '10.1.2.3'), undefined, 'no implied subdomains');
  });

  test('refuses an allow-list entry that is none of name, address, CIDR', () => {
    for (const entry of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/', 'nonsense/8', 'http://hooks.internal', 'hooks.internal:8080', '*.example.com', 'a b']) {
      assert.throws(() => new AddressPolicy({ allowHttp: false, allowedHosts: [entry] }), AllowedHostError, entry);
    }
  });

  test('checkUrl refuses schemes, plain http, credentials and forbidden IP literals on their face', () => {
    const strict = new AddressPolicy({ allowHttp: false, allowedHosts: [] });
    assert.equal(strict.checkUrl('https://hooks.example.com/x'), undefined);
    assert.equal(strict.checkUrl('https://evil.test/'), undefined, 'names are checked when they resolve');
    assert.match(strict.checkUrl('http://hooks.example.com/') ?? '', /plain http/);
    assert.match(strict.checkUrl('ftp://hooks.example.com/') ?? '', /scheme ftp:/);
    assert.match(strict.checkUrl('file:///etc/passwd') ?? '', /scheme file:/);
    assert.match(strict.checkUrl('https://user:pass@hooks.example.com/') ?? '', /credentials/);
    assert.match(strict.checkUrl('https://token@hooks.example.com/') ?? '', /credentials/);
    assert.match(strict.checkUrl('not a url') ?? '', /not a valid URL/);
    assert.match(strict.checkUrl('https://0x7f.1/') ?? '', /127\.0\.0\.1 is a forbidden address \(loopback\)/);
    assert.match(strict.checkUrl('https://[::ffff:169.254.169.254]/') ?? '', /IPv4-mapped form of 169\.254\.169\.254/);
    assert.equal(strict.checkUrl('https://8.8.8.8/'), undefined);

    const local = new AddressPolicy({ allowHttp: true, allowedHosts: ['127.0.0.1'] });
    assert.equal(local.checkUrl('http://127.0.0.1:8080/hook'), undefined);
    assert.equal(local.checkUrl(new URL('http://2130706433/')), undefined);
    assert.match(local.checkUrl('http://[::1]/') ?? '', /::1 is a forbidden address/);
  });
});

// HOST:PORT parsing and formatting (address.ts): the tables say what each spelling means, and
// properties check the IPv6 test against a naive oracle (every expansion of "::" tried) and that
// formatting and parsing undo each other.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AddressError, formatHostPort, hostPortProblem, isIpv6Address, parseHostPort } from '../src/index.js';

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:7101', '127.0.0.1', 7101],
    ['10.0.0.1:1', '10.0.0.1', 1],
    ['node-1.example:65535', 'node-1.example', 65535],
    ['db_3:8101', 'db_3', 8101],
    ['localhost:80', 'localhost', 80],
    ['0.0.0.0:7101', '0.0.0.0', 7101],
    ['[::1]:9651', '::1', 9651],
    ['[::]:9651', '::', 9651],
    ['[2001:db8::7]:7101', '2001:db8::7', 7101],
    ['[2001:DB8:0:0:0:0:0:7]:7101', '2001:DB8:0:0:0:0:0:7', 7101],
    ['[::ffff:10.0.0.1]:7101', '::ffff:10.0.0.1', 7101],
    ['[fe80::1%eth0]:9651', 'fe80::1%eth0', 9651],
    ['[fe80::1%2]:9651', 'fe80::1%2', 9651],
  ])('%j is host %j, port %i', (text, host, port) => {
    expect(parseHostPort(text)).toEqual({ host, port });
    expect(hostPortProblem(text)).toBeUndefined();
  });

  it.each([
    // The ambiguous spelling: IPv6 without brackets, with what was probably meant.
    ['::1:9651', /^"::1:9651" is ambiguous: an IPv6 address with a port goes in brackets, e\.g\. \[::1\]:9651$/],
    [':::9651', /^":::9651" is ambiguous: .* e\.g\. \[::\]:9651$/],
    ['fe80::1%eth0:9651', /is ambiguous: .* e\.g\. \[fe80::1%eth0\]:9651$/],
    ['::1', /^"::1" is an IPv6 address without a port: expected \[IPv6\]:PORT, e\.g\. \[::1\]:7101$/],
    ['1:2:3:4:5:6:7:8', /is an IPv6 address without a port/],
    ['a:b:c', /^"a:b:c" is not HOST:PORT: an IPv6 address with a port goes in brackets/],
    // No port, no host, a bad port.
    ['localhost', /^"localhost" has no port: expected HOST:PORT, e\.g\. /],
    ['[::1]', /^"\[::1\]" has no port: expected \[IPv6\]:PORT, e\.g\. \[::1\]:7101$/],
    [':7101', /^":7101" has no host/],
    ['', /^"" has no port/],
    ['host:', /port "" is not a decimal integer in \[1, 65535\]/],
    ['host:0', /^"host:0": port 0 lets a listener pick a port, which others cannot know$/],
    ['[::1]:0', /port 0 lets a listener pick a port/],
    ['host:65536', /port "65536" is not a decimal integer in \[1, 65535\]/],
    ['host:07101', /port "07101" is not a decimal integer .* without a leading zero/],
    ['host:+80', /port "\+80" is not/],
    ['host:80 ', /port "80 " is not/],
    ['host:99999999999', /port "99999999999" is not/],
    // Brackets hold IPv6 only, and close before the port.
    ['[::1:9651', /^"\[::1:9651" opens a bracket it does not close/],
    ['[10.0.0.1]:7101', /brackets hold an IPv6 address .* and "10\.0\.0\.1" is none/],
    ['[1::2::3]:7101', /and "1::2::3" is none/],
    ['[::1]x:7101', /expected ":PORT" after "\]"/],
    ['[]:7101', /and "" is none/],
    ['[fe80::1%]:7101', /and "fe80::1%" is none/],
    ['[fe80::1%eth 0]:7101', /is none/],
    // Host names a URL could not carry.
    ['a b:1', /host "a b" holds " "/],
    ['http://h:1', /is not HOST:PORT|holds "\/"/],
    ['h/x:1', /holds "\/"/],
    ['user@h:1', /holds "@"/],
    ['h%eth0:1', /holds "%"/],
    ['h\n:1', /holds "\\n"/],
    [`${'a'.repeat(254)}:1`, /its host of 254 characters is longer than a host name can be \(253\)/],
  ])('%j is refused: %s', (text, message) => {
    expect(() => parseHostPort(text)).toThrow(AddressError);
    expect(() => parseHostPort(text)).toThrow(message);
    expect(hostPortProblem(text)).toMatch(message);
  });

  it('an error has the stable code ADDRESS_INVALID and is not retryable', () => {
    expect(() => parseHostPort('::1:9651')).toThrow(expect.objectContaining({ code: 'ADDRESS_INVALID', retryable: false, name: 'AddressError' }));
  });

  it('a long bad address is cut in the message', () => {
    const problem = hostPortProblem(`${'x'.repeat(10_000)}`)!;
    expect(problem.length).toBeLessThan(200);
    expect(problem).toMatch(/^"x{80}…" has no port/);
  });
});

describe('formatHostPort', () => {
  it.each([
    [{ host: '127.0.0.1', port: 7101 }, '127.0.0.1:7101'],
    [{ host: 'node-1.example', port: 1 }, 'node-1.example:1'],
    [{ host: '::1', port: 9651 }, '[::1]:9651'],
    [{ host: '::', port: 9651 }, '[::]:9651'],
    [{ host: 'fe80::1%eth0', port: 9651 }, '[fe80::1%eth0]:9651'],
  ])('%j is %j', (address, text) => {
    expect(formatHostPort(address)).toBe(text);
  });
});

/** A group of 1 to 4 hex digits, either case. */
const hexGroup = fc.stringMatching(/^[0-9a-fA-F]{1,4}$/);
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
/** Text IPv6 addresses are made of, shuffled: most of it is not an address, some of it is. */
const ipv6ish = fc.array(fc.oneof(hexGroup, fc.constant(':'), fc.constant('::'), ipv4), { maxLength: 12 }).map((parts) => parts.join(''));
/** Valid IPv6 addresses: eight groups, perhaps a run of them written "::", perhaps an IPv4 tail. */
const ipv6 = fc
  .tuple(fc.array(hexGroup, { minLength: 8, maxLength: 8 }), fc.nat(8), fc.nat(8), fc.boolean())
  .chain(([groups, from, length, v4]) =>
    (v4 ? ipv4 : fc.constant(undefined)).map((tail) => {
      const all = tail === undefined ? groups : [...groups.slice(0, 6), tail];
      const start = Math.min(from, all.length);
      const cut = Math.min(length, all.length - start);
      if (cut === 0) return all.join(':');
      return `${all.slice(0, start).join(':')}::${all.slice(start + cut).join(':')}`;
    }),
  );

/**
 * The naive oracle: an IPv6 address is eight hex groups (the last two perhaps one dotted IPv4), with one
 * "::" that stands for some run of 1 to 8 zero groups: try each.
 */
function naiveIsIpv6(text: string): boolean {
  const isOctet = (s: string) => /^[0-9]{1,3}$/.test(s) && String(Number(s)) === s && Number(s) <= 255;
  const isFull = (candidate: string) => {
    const groups = candidate.split(':');
    const last = groups.at(-1)!.split('.');
    const sixteenBit = last.length === 4 && last.every(isOctet) ? [...groups.slice(0, -1), '0', '0'] : groups;
    return sixteenBit.length === 8 && sixteenBit.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g));
  };
  const halves = text.split('::');
  if (halves.length === 1) return isFull(text);
  if (halves.length > 2) return false;
  for (let zeros = 1; zeros <= 8; zeros++) {
    const candidate = [halves[0]!, ...Array.from({ length: zeros }, () => '0'), halves[1]!].filter((part) => part !== '').join(':');
    if (isFull(candidate)) return true;
  }
  return false;
}

describe('properties', () => {
  it('isIpv6Address agrees with the naive oracle', () => {
    fc.assert(fc.property(fc.oneof(ipv6ish, ipv6), (text) => isIpv6Address(text) === naiveIsIpv6(text)), { numRuns: 5_000 });
  });

  // What node:net's isIPv6 answers for each (checked by hand; core's tests cannot import node:*).
  it.each([
    ['::', true],
    ['::1', true],
    ['1::', true],
    ['1:2:3:4:5:6:7:8', true],
    ['::ffff:1.2.3.4', true],
    ['1:2:3:4:5:6:1.2.3.4', true],
    ['fe80::1%eth0', true],
    [':1', false],
    ['1:', false],
    [':::', false],
    ['1::2::3', false],
    ['1.2.3.4::', false],
    ['::1.2.3.4:1', false],
    ['::01.2.3.4', false],
    ['::1.2.3', false],
    ['12345::', false],
    ['1:2:3:4:5:6:7:8:9', false],
    ['1::2:3:4:5:6:7:8', false],
    ['fe80::1%', false],
  ] as const)('isIpv6Address(%j) is %s, as the oracle says', (text, valid) => {
    expect(isIpv6Address(text)).toBe(valid);
    if (!text.includes('%')) expect(naiveIsIpv6(text)).toBe(valid);
  });

  it('every generated IPv6 address is one', () => {
    fc.assert(fc.property(ipv6, (text) => isIpv6Address(text)));
  });

  it('parseHostPort undoes formatHostPort, for IPv6, IPv4 and names', () => {
    const host = fc.oneof(ipv6, ipv4, fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,30}$/));
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65_535 }), (h, port) => {
        const text = formatHostPort({ host: h, port });
        expect(parseHostPort(text)).toEqual({ host: h, port });
        expect(formatHostPort(parseHostPort(text))).toBe(text);
      }),
    );
  });
});

import { createServer } from 'node:net';

/**
 * Ports for node listeners, below Linux's ephemeral range (32768–60999 by
 * default): a port the kernel hands out for an outgoing connection (a node
 * dialing a peer) can never take one a node must listen on again after a
 * restart.
 */
const PORT_MIN = 20_000;
const PORT_MAX = 32_000;
const ATTEMPTS_MAX = 200;

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * `count` distinct ports free right now. Picked at random — the one use of
 * unseeded randomness here: which ports a run gets is the machine's business,
 * not the seed's, and concurrent runs must not pick the same ones.
 */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count; attempt++) {
    if (attempt >= ATTEMPTS_MAX) throw new Error(`found only ${ports.length} of ${count} free ports in [${PORT_MIN}, ${PORT_MAX}) after ${ATTEMPTS_MAX} tries`);
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (!ports.includes(port) && (await canBind(port))) ports.push(port);
  }
  return ports;
}

import { open } from 'lmdb';
import fs from 'node:fs';
const mode = process.argv[2]; const N = +(process.env.N||2000);
fs.rmSync('/tmp/lt/db', { recursive: true, force: true });
const env = open({ path: '/tmp/lt/db', maxDbs: 4, noSync: false, noMetaSync: false });
const db = env.openDB({ name: 'log' });
const v = Buffer.alloc(64, 1);
const c0 = process.cpuUsage(); const t0 = performance.now();
for (let i = 0; i < N; i++) {
  if (mode === 'async') { await env.transaction(() => { db.putSync(i, v); db.putSync(-i - 1, v); }); await env.flushed; }
  else if (mode === 'sync') { env.transactionSync(() => { db.putSync(i, v); db.putSync(-i - 1, v); }); await env.flushed; }
  else if (mode === 'syncnoflush') { env.transactionSync(() => { db.putSync(i, v); db.putSync(-i - 1, v); }); }
}
const dt = performance.now() - t0; const c = process.cpuUsage(c0);
console.log(mode, (dt / N * 1000).toFixed(0), 'µs/commit wall', ((c.user + c.system) / N).toFixed(0), 'µs CPU/commit (user', (c.user / N).toFixed(0), 'sys', (c.system / N).toFixed(0) + ')');
await env.close();

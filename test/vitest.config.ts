import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A simulator block runs 50 seeds synchronously (2-5 s on the 2-core CI machine,
    // more under load), so the default 5 s timeout would cut it off.
    testTimeout: 120_000,
  },
});

// The demo page's huddle.js is generated from src/ but committed (the server
// embeds it): fail when it was not regenerated after a change.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const pkg = fileURLToPath(new URL('../../', import.meta.url));

test('clients/demo/huddle.js is the current build of src/ (run `npm run build:demo`)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'huddle-bundle-'));
  try {
    const fresh = join(dir, 'huddle.js');
    execFileSync(process.execPath, [join(pkg, 'scripts', 'bundle.mjs'), fresh], { cwd: pkg, stdio: 'pipe' });
    const committed = readFileSync(join(pkg, '..', 'demo', 'huddle.js'), 'utf8');
    assert.ok(committed === readFileSync(fresh, 'utf8'), 'clients/demo/huddle.js is stale: run `npm run build:demo` in clients/js');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

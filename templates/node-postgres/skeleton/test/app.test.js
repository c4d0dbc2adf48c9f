'use strict';
// The API end to end over HTTP, on the in-memory store: `npm test` (or `node --test`).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { createApp } = require('../src/app');
const { MemoryStore } = require('../src/store');

let server;
let base;

before(async () => {
  server = createApp(new MemoryStore());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => server.close(resolve)));

test('healthz and readyz answer ok', async () => {
  for (const path of ['/healthz', '/readyz']) {
    const res = await fetch(base + path);
    assert.equal(res.status, 200);
  }
});

test('an item posted is listed', async () => {
  const created = await fetch(`${base}/items`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'first' }),
  });
  assert.equal(created.status, 201);
  const item = await created.json();
  assert.equal(item.name, 'first');

  const listed = await (await fetch(`${base}/items`)).json();
  assert.deepEqual(
    listed.items.map((i) => i.name),
    ['first'],
  );
});

test('a bad item is refused with a reason', async () => {
  for (const body of ['{"name": ""}', '{"nom": "x"}', 'not json']) {
    const res = await fetch(`${base}/items`, { method: 'POST', body });
    assert.equal(res.status, 400, body);
    assert.ok((await res.json()).error);
  }
});

test('unknown paths are 404 and wrong methods 405', async () => {
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  assert.equal((await fetch(`${base}/healthz`, { method: 'DELETE' })).status, 405);
});

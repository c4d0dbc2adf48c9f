'use strict';
// The HTTP API of {{ service }}: health checks and /items, on Node's own http module.

const http = require('node:http');

const MAX_BODY = 64 * 1024;

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'));
      } catch {
        reject(Object.assign(new Error('body is not valid JSON'), { status: 400 }));
      }
    });
    req.on('error', reject);
  });
}

function createApp(store) {
  const routes = {
    'GET /healthz': async () => [200, { status: 'ok' }],
    'GET /readyz': async () => {
      try {
        await store.ping();
        return [200, { status: 'ready' }];
      } catch (err) {
        console.error('readiness check failed:', err.message);
        return [503, { status: 'unavailable' }];
      }
    },
    'GET /items': async () => [200, { items: await store.list() }],
    'POST /items': async (req) => {
      const body = await readJson(req);
      const name = body && typeof body.name === 'string' ? body.name.trim() : '';
      if (!name || name.length > 200) {
        return [400, { error: 'send {"name": "..."} with 1 to 200 characters' }];
      }
      return [201, await store.add(name)];
    },
  };

  return http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    const route = routes[`${req.method} ${path}`];
    if (!route) {
      const known = Object.keys(routes).some((key) => key.endsWith(` ${path}`));
      send(res, known ? 405 : 404, { error: known ? 'method not allowed' : 'not found' });
      return;
    }
    try {
      const [status, body] = await route(req);
      send(res, status, body);
    } catch (err) {
      if (err.status) {
        send(res, err.status, { error: err.message });
        return;
      }
      console.error(`${req.method} ${path} failed:`, err);
      send(res, 500, { error: 'internal error' });
    }
  });
}

module.exports = { createApp };

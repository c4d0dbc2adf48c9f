'use strict';
const fs = require('fs');
// Where items live: Postgres when DATABASE_URL is set, or DATABASE_URL_FILE names a file
// holding it (in the cluster: written by the Vault Agent, with a short-lived login it
// renews and replaces; a changed file gets a new pool), otherwise memory (tests, a laptop).
// The pg module is loaded only for Postgres, so the tests need no `npm install`.

class MemoryStore {
  constructor() {
    this.items = [];
  }

  async ping() {
    return true;
  }

  async list() {
    return this.items.slice();
  }

  async add(name) {
    const item = { id: this.items.length + 1, name, created_at: new Date().toISOString() };
    this.items.push(item);
    return item;
  }

  async close() {}
}

class PostgresStore {
  constructor(url) {
    this.url = typeof url === 'function' ? url : () => url;
    this.ready = this.currentPool().query(
      'CREATE TABLE IF NOT EXISTS items (' +
        'id SERIAL PRIMARY KEY, name TEXT NOT NULL, ' +
        'created_at TIMESTAMPTZ NOT NULL DEFAULT now())',
    );
  }

  currentPool() {
    const url = this.url();
    if (url !== this.connectedTo) {
      const { Pool } = require('pg');
      if (this.pool) this.pool.end().catch(() => {});
      this.pool = new Pool({ connectionString: url, max: 5 });
      this.connectedTo = url;
    }
    return this.pool;
  }

  async ping() {
    await this.ready;
    await this.currentPool().query('SELECT 1');
    return true;
  }

  async list() {
    await this.ready;
    const result = await this.currentPool().query('SELECT id, name, created_at FROM items ORDER BY id');
    return result.rows;
  }

  async add(name) {
    await this.ready;
    const result = await this.currentPool().query(
      'INSERT INTO items (name) VALUES ($1) RETURNING id, name, created_at',
      [name],
    );
    return result.rows[0];
  }

  async close() {
    await this.pool.end();
  }
}

function storeFromEnv(env = process.env) {
  if (env.DATABASE_URL) {
    return new PostgresStore(env.DATABASE_URL);
  }
  const file = env.DATABASE_URL_FILE;
  if (file && fs.existsSync(file)) {
    return new PostgresStore(() => fs.readFileSync(file, 'utf8').trim());
  }
  console.warn('DATABASE_URL is not set: items are kept in memory and lost on restart');
  return new MemoryStore();
}

module.exports = { MemoryStore, PostgresStore, storeFromEnv };

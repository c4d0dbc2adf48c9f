'use strict';
// Starts {{ service }}: listens on $PORT and stops gracefully on SIGTERM.

const { createApp } = require('./app');
const { storeFromEnv } = require('./store');

const port = Number(process.env.PORT || {{ port }});
const store = storeFromEnv();
const server = createApp(store);

server.listen(port, () => {
  console.log(`{{ service }} listening on port ${port}`);
});

function shutdown(signal) {
  console.log(`${signal}: closing`);
  server.close(async () => {
    await store.close();
    process.exit(0);
  });
  setTimeout(() => process.exit(1), 10000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// An S3-compatible server for the tests, on loopback: @20minutes/s3rver,
// which checks SigV4 signatures (the plain s3rver 3.x only checks that the
// key id exists).  It knows the key pairs given, besides its own
// S3RVER:S3RVER, and creates the bucket if it is not there yet.
//
//   node s3rver.js DIR PORT BUCKET [ID:SECRET ...]
//
// With S3RVER_TLS_KEY and S3RVER_TLS_CERT (PEM files) it speaks HTTPS.
// Prints "s3rver listening on 127.0.0.1:PORT" once it serves.
'use strict';
const fs = require('fs');
const S3rver = require('@20minutes/s3rver');
const { DUMMY_ACCOUNT } = require('@20minutes/s3rver/lib/models/account');

const [dir, port, bucket, ...keys] = process.argv.slice(2);
if (!dir || !port || !bucket) {
  console.error('usage: node s3rver.js DIR PORT BUCKET [ID:SECRET ...]');
  process.exit(2);
}
for (const kv of keys) {
  const i = kv.indexOf(':');
  DUMMY_ACCOUNT.createKeyPair(kv.slice(0, i), kv.slice(i + 1));
}
new S3rver({
  address: '127.0.0.1',
  port: Number(port),
  silent: false,
  directory: dir,
  configureBuckets: [{ name: bucket, configs: [] }],
  ...(process.env.S3RVER_TLS_KEY && {
    key: fs.readFileSync(process.env.S3RVER_TLS_KEY),
    cert: fs.readFileSync(process.env.S3RVER_TLS_CERT),
  }),
})
  .run()
  .then(({ address, port: p }) => console.log(`s3rver listening on ${address}:${p}`))
  .catch((e) => {
    console.error(`s3rver: ${e.message}`);
    process.exit(1);
  });

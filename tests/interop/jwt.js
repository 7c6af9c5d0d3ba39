// Node's jsonwebtoken, driven by tests/test_interop_node.py.
//
// Reads one JSON command on stdin and writes one JSON answer on stdout:
//   {"op": "sign", "payload": {...}, "key": "...", "alg": "HS256", "options": {...}}
//     -> {"token": "..."}
//   {"op": "verify", "token": "...", "key": "...", "alg": "HS256", "options": {...}}
//     -> {"payload": {...}}
// "key" is a secret string or PEM text; with "keyEncoding": "base64" it is decoded to
// bytes first. "options" go to jwt.sign / jwt.verify as they are; "alg" becomes
// options.algorithm (sign) or options.algorithms = [alg] (verify).
// A token jsonwebtoken refuses, or a key or option it rejects, answers
// {"error": {"name": ..., "message": ...}} with exit status 0; a malformed command
// exits with status 2.
'use strict';

const jwt = require('jsonwebtoken');

function run(command) {
  const key = command.keyEncoding === 'base64' ? Buffer.from(command.key, 'base64') : command.key;
  const options = { ...(command.options || {}) };
  if (command.op === 'sign') {
    if (command.alg) options.algorithm = command.alg;
    return { token: jwt.sign(command.payload, key, options) };
  }
  if (command.alg) options.algorithms = [command.alg];
  return { payload: jwt.verify(command.token, key, options) };
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  let command;
  try {
    command = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (command === null || typeof command !== 'object') throw new TypeError('not a JSON object');
    if (command.op !== 'sign' && command.op !== 'verify') {
      throw new TypeError(`unknown op ${JSON.stringify(command.op)}`);
    }
  } catch (err) {
    process.stderr.write(`bad command: ${err.message}\n`);
    process.exit(2);
  }
  let answer;
  try {
    answer = run(command);
  } catch (err) {
    answer = { error: { name: err.name, message: err.message } };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});

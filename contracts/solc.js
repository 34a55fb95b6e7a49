#!/usr/bin/env node
// A `solc`-compatible command over the npm `solc` package (the WebAssembly compiler), so that
// py-solc-x can drive it through `solc_binary`. It answers two forms only:
//
//   solc.js --version          prints "Version: <full version>" like the native compiler
//   solc.js --standard-json    reads Standard JSON input on stdin, writes ONLY the JSON output
//
// Options py-solc-x may add (--base-path, --allow-paths, ...) are accepted. The compile step
// passes every source inline; tools that name sources by path instead (crytic-compile, which
// slither uses) get them read from files under the working directory or an --allow-paths
// directory, and nowhere else.
'use strict';

const fs = require('fs');
const path = require('path');

function fail(message) {
  process.stderr.write(`solc.js: ${message}\n`, () => process.exit(1));
}

// Write to stdout and exit only once the data has been flushed: exiting right after a write
// to a pipe truncates the output at 64 KiB.
function writeAndExit(text, code) {
  process.stdout.write(text, () => process.exit(code));
}

function loadCompiler() {
  try {
    return require('solc');
  } catch (err) {
    fail(`cannot load the npm "solc" package (${err.message}); run "npm install" or "make setup"`);
    return null;
  }
}

// `--version` is asked before every compile; loading the WebAssembly compiler takes most of a
// second, so remember the answer per installed compiler file.
function cachedVersion() {
  let soljson;
  try {
    soljson = require.resolve('solc/soljson.js');
  } catch (err) {
    return null;
  }
  const stat = fs.statSync(soljson);
  const cacheDir = path.join(path.dirname(path.dirname(soljson)), '.cache', 'medswarm-solc');
  const cacheFile = path.join(cacheDir, `version-${stat.size}-${Math.floor(stat.mtimeMs)}.txt`);
  try {
    return fs.readFileSync(cacheFile, 'utf8');
  } catch (err) {
    const solc = loadCompiler();
    if (solc === null) return null;
    const version = solc.version();
    try {
      fs.mkdirSync(cacheDir, { recursive: true });
      fs.writeFileSync(cacheFile, version);
    } catch (ignored) {
      // A read-only node_modules only costs speed.
    }
    return version;
  }
}

function readStdin(callback) {
  const chunks = [];
  process.stdin.on('data', (chunk) => chunks.push(chunk));
  process.stdin.on('end', () => callback(Buffer.concat(chunks).toString('utf8')));
  process.stdin.on('error', (err) => fail(`cannot read stdin: ${err.message}`));
}

function allowedPaths(argv) {
  const at = argv.indexOf('--allow-paths');
  return at >= 0 && at + 1 < argv.length ? argv[at + 1].split(',') : [];
}

// The import callback: a source file named by path, if it lies under an allowed directory.
function readSource(allowed) {
  return (name) => {
    const file = path.resolve(name);
    if (!allowed.some((dir) => file === dir || file.startsWith(dir + path.sep))) {
      return { error: `${name} is outside the allowed paths` };
    }
    try {
      return { contents: fs.readFileSync(file, 'utf8') };
    } catch (err) {
      return { error: `cannot read ${name}: ${err.message}` };
    }
  };
}

// With MEDSWARM_SOLC_PROJECT_SETTINGS=1 the request is compiled with the project's settings
// (viaIR, optimizer 200 runs, evmVersion cancun, as contracts/compile.py uses) whatever the
// caller asked: analysers such as slither then see the code exactly as it is deployed.
function withProjectSettings(input) {
  if (process.env.MEDSWARM_SOLC_PROJECT_SETTINGS !== '1') return input;
  const request = JSON.parse(input);
  request.settings = Object.assign({}, request.settings, {
    viaIR: true,
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
  });
  return JSON.stringify(request);
}

function main(argv) {
  if (argv.includes('--version')) {
    const version = cachedVersion();
    if (version === null) {
      fail('cannot determine the compiler version; run "npm install" or "make setup"');
      return;
    }
    writeAndExit(`solc, the solidity compiler commandline interface\nVersion: ${version}\n`, 0);
    return;
  }
  if (argv.includes('--standard-json')) {
    const solc = loadCompiler();
    if (solc === null) return;
    const allowed = [process.cwd(), ...allowedPaths(argv)].map((p) => path.resolve(p));
    readStdin((input) => {
      const request = withProjectSettings(input);
      writeAndExit(solc.compile(request, { import: readSource(allowed) }), 0);
    });
    return;
  }
  fail('only --version and --standard-json are supported');
}

main(process.argv.slice(2));

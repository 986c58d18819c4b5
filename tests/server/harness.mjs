// Shared helpers of the server's end-to-end tests: load the npm clients from the cache folder
// tools/install-node-deps.sh fills (exit 77, ctest's skip code, when absent), start
// `mlxcpp server` on a free loopback port and stop it.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';

export const SKIP = 77;

export async function loadPackage(nodeDir, name) {
  const require = createRequire(import.meta.url);
  let resolved;
  try {
    resolved = require.resolve(name, { paths: [nodeDir, `${nodeDir}/node_modules`] });
  } catch {
    console.log(`SKIP: npm package '${name}' is not installed in ${nodeDir} (run tools/install-node-deps.sh)`);
    process.exit(SKIP);
  }
  return import(pathToFileURL(resolved).href);
}

export function assert(cond, message) {
  if (!cond) throw new Error('assertion failed: ' + message);
}

// JSON text with object keys sorted, so equality ignores key order.
function canonical(v) {
  return JSON.stringify(v, (k, x) => (x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((key) => [key, x[key]])) : x));
}

export function assertEq(actual, expected, message) {
  const a = canonical(actual), e = canonical(expected);
  if (a !== e) throw new Error(`assertion failed: ${message}: got ${a}, expected ${e}`);
}

// Starts the server with --port 0 and resolves once it prints its address.
export function startServer(bin, model, args = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['server', '--model', model, '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + out)), 60000);
    const onData = (d) => {
      out += d.toString();
      const m = out.match(/on http:\/\/([0-9.]+):(\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, port: Number(m[2]), baseURL: `http://127.0.0.1:${m[2]}`, log: () => out });
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
}

// Sends SIGTERM and resolves with the exit code (rejects after `ms`).
export function stopServer(server, ms = 20000) {
  return new Promise((resolve, reject) => {
    if (server.proc.exitCode !== null) return resolve(server.proc.exitCode);
    const timer = setTimeout(() => {
      server.proc.kill('SIGKILL');
      reject(new Error('server did not stop within ' + ms + ' ms of SIGTERM'));
    }, ms);
    server.proc.removeAllListeners('exit');
    server.proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    server.proc.kill('SIGTERM');
  });
}

export function rssKiB(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(s.match(/VmRSS:\s+(\d+)/)[1]);
}

export async function health(baseURL) {
  const r = await fetch(baseURL + '/health');
  return r.json();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs named async checks in order; prints each; exits non-zero on the first failure.
export async function run(checks, cleanup) {
  let failed = false;
  for (const [name, fn] of checks) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
      failed = true;
      break;
    }
  }
  if (cleanup) await cleanup();
  process.exit(failed ? 1 : 0);
}

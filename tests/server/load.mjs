// Bounded loopback load test of `mlxcpp server` on the echo model: 64 concurrent streaming
// clients, some disconnecting mid-stream, some sending malformed bodies. Afterwards every valid
// request must have streamed exactly its echo (the model's trained behaviour), the server must
// still answer, every cancelled generation must have left the batch, and the resident memory
// must be back near its level after warm-up (two waves: no growth from the first to the second).
// usage: node load.mjs <mlxcpp binary> <repo root>   (plain fetch only: no npm packages needed)
import { assert, assertEq, health, rssKiB, run, sleep, startServer, stopServer } from './harness.mjs';

const [bin, root] = process.argv.slice(2);
const CLIENTS = Number(process.env.LOAD_CLIENTS || 64);
const ROUNDS = Number(process.env.LOAD_ROUNDS || 3);
const server = await startServer(bin, `${root}/models/gemma3-tiny-echo`, ['--decode-concurrency', '32']);
const url = server.baseURL + '/v1/chat/completions';

let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
function phrase() {
  const words = [];
  let len = 10 + Math.floor(rand() * 20);
  while (words.join(' ').length < len) {
    const n = 2 + Math.floor(rand() * 6);
    words.push(Array.from({ length: n }, () => String.fromCharCode(97 + Math.floor(rand() * 26))).join(''));
  }
  return words.join(' ');
}

// Streams one chat completion; returns the text and the finish reason.
async function streamChat(text, { abortAfter = 0 } = {}) {
  const ac = new AbortController();
  const body = { messages: [{ role: 'user', content: text }], stream: true, max_tokens: 64 };
  if (abortAfter) Object.assign(body, { max_tokens: 400, logit_bias: { 1: -100, 5: -100 } });
  const r = await fetch(url, { method: 'POST', signal: ac.signal, headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body) });
  assertEq(r.status, 200, 'status');
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '', out = '', finish = null, chunks = 0, done = false;
  while (!done) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ')) continue;
      const data = ev.slice(6);
      if (data === '[DONE]') { done = true; break; }
      const j = JSON.parse(data);
      if (j.error) throw new Error('stream error: ' + j.error.message);
      const c = j.choices[0];
      if (c?.delta?.content) out += c.delta.content;
      if (c?.finish_reason) finish = c.finish_reason;
      if (abortAfter && ++chunks >= abortAfter) { ac.abort(); return { aborted: true }; }
    }
  }
  return { text: out, finish };
}

const malformed = [
  ['{"messages": [', 400],
  [JSON.stringify({ messages: 'not a list' }), 400],
  [JSON.stringify({ messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }), 400],
  [JSON.stringify({ messages: [{ role: 'user', content: 'x' }], n: 3 }), 400],
  ['"just a string"', 400],
  ['{"messages":' + '['.repeat(5000) + ']'.repeat(5000) + '}', 400],
];

async function wave(label) {
  const stats = { ok: 0, aborted: 0, malformed: 0 };
  const clients = Array.from({ length: CLIENTS }, async (_, c) => {
    for (let k = 0; k < ROUNDS; k++) {
      const kind = (c + k) % 8;
      if (kind === 3) {
        const [body, status] = malformed[(c + k) % malformed.length];
        const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
        const j = await r.json();
        assertEq(r.status, status, 'malformed status');
        assert(j.error && typeof j.error.message === 'string', 'error shape');
        stats.malformed++;
      } else if (kind === 6) {
        await streamChat(phrase(), { abortAfter: 3 });
        stats.aborted++;
      } else {
        const text = phrase();
        const r = await streamChat(text);
        assertEq([r.text, r.finish], [text, 'stop'], `${label}: client ${c} round ${k}`);
        stats.ok++;
      }
    }
  });
  await Promise.all(clients);
  // Cancelled generations leave the batch; the engine goes idle.
  let h;
  for (let i = 0; i < 100; i++) {
    h = await health(server.baseURL);
    if (h.decoding === 0 && h.prefilling === 0 && h.waiting === 0) break;
    await sleep(100);
  }
  assert(h.decoding === 0 && h.prefilling === 0 && h.waiting === 0, 'engine idle: ' + JSON.stringify(h));
  return { stats, health: h };
}

let baseline = 0, afterFirst = 0;
await run([
  ['warm-up', async () => {
    for (let i = 0; i < 4; i++) assertEq((await streamChat('warm up')).text, 'warm up', 'warm-up echo');
    baseline = rssKiB(server.proc.pid);
  }],
  ['wave 1', async () => {
    const t0 = Date.now();
    const { stats, health: h } = await wave('wave 1');
    afterFirst = rssKiB(server.proc.pid);
    console.log(`     ${JSON.stringify(stats)} in ${Date.now() - t0} ms; RSS ${baseline} -> ${afterFirst} KiB; ${JSON.stringify(h)}`);
    assert(h.cancelled >= stats.aborted, 'every abort cancelled its generation');
  }],
  ['wave 2 (no growth)', async () => {
    const { stats } = await wave('wave 2');
    const after = rssKiB(server.proc.pid);
    console.log(`     ${JSON.stringify(stats)}; RSS ${afterFirst} -> ${after} KiB; ${JSON.stringify(await health(server.baseURL))}`);
    assert(after - afterFirst < 12 * 1024, `RSS grew by ${after - afterFirst} KiB between equal waves`);
    assert(after - baseline < 32 * 1024, `RSS is ${after - baseline} KiB above the warm baseline`);
  }],
  ['alive', async () => {
    assertEq((await streamChat('still here')).text, 'still here', 'echo after the load');
    assertEq(await stopServer(server), 0, 'exit code');
  }],
], async () => { if (server.proc.exitCode === null) server.proc.kill('SIGKILL'); });

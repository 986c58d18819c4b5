// Serving benchmark of `mlxcpp server`: aggregate generated tokens/s and time to first token
// (TTFT) at several concurrencies. Each client streams one /v1/completions request with its own
// random prompt of --prompt-tokens ids and exactly --gen-tokens generated tokens (end-of-sequence
// ids are masked with logit_bias, so random models also run to length).
// usage: node bench/server_bench.mjs <mlxcpp binary> <model dir> [--concurrency 1,8,32,64]
//        [--prompt-tokens 64] [--gen-tokens 64] [-- extra server flags]
import fs from 'node:fs';
import { spawn } from 'node:child_process';

const argv = process.argv.slice(2);
const [bin, model] = argv;
const opt = { concurrency: '1,8,32,64', 'prompt-tokens': '64', 'gen-tokens': '64' };
let extra = [];
for (let i = 2; i < argv.length; i++) {
  if (argv[i] === '--') { extra = argv.slice(i + 1); break; }
  opt[argv[i].replace(/^--/, '')] = argv[++i];
}
const levels = opt.concurrency.split(',').map(Number);
const promptTokens = Number(opt['prompt-tokens']), genTokens = Number(opt['gen-tokens']);
const config = JSON.parse(fs.readFileSync(`${model}/config.json`, 'utf8'));
const text = config.text_config ?? config;
const vocab = text.vocab_size;
let eos = [];
for (const f of ['config.json', 'generation_config.json']) {
  try {
    const e = JSON.parse(fs.readFileSync(`${model}/${f}`, 'utf8')).eos_token_id;
    if (e !== undefined) eos = eos.concat(e);
  } catch { /* absent */ }
}
const bias = Object.fromEntries([...new Set(eos)].map((id) => [id, -100]));

const maxC = Math.max(...levels);
const server = await new Promise((resolve, reject) => {
  const proc = spawn(bin, ['server', '--model', model, '--port', '0', '--decode-concurrency', String(maxC),
    '--prompt-concurrency', '8', '--prompt-cache-size', '0', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
    const m = out.match(/on http:\/\/[0-9.]+:(\d+)\//);
    if (m) resolve({ proc, url: `http://127.0.0.1:${m[1]}/v1/completions` });
  });
  proc.on('exit', (c) => reject(new Error('server exited ' + c)));
});

let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
// Ids from the middle of the vocabulary: ordinary text pieces, no special tokens.
const prompt = () => Array.from({ length: promptTokens }, () => 1000 + Math.floor(rand() * (vocab - 2000)));

async function one() {
  const t0 = performance.now();
  const r = await fetch(server.url, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: prompt(), max_tokens: genTokens, stream: true, logprobs: 0,
      logit_bias: bias, stream_options: { include_usage: true } }) });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '', ttft = null, tokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.error) throw new Error(j.error.message);
      if (j.usage) tokens = j.usage.completion_tokens;
      else if (ttft === null && j.choices[0]?.logprobs) ttft = performance.now() - t0;
    }
  }
  return { ttft, tokens, total: performance.now() - t0 };
}

const pct = (a, p) => a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))];
await one();  // warm-up
console.log(`model ${model}, prompt ${promptTokens} tokens, ${genTokens} generated tokens per request`);
console.log('| concurrency | generated tokens | wall s | aggregate tok/s | per-request tok/s | TTFT p50 ms | TTFT max ms |');
console.log('|---|---|---|---|---|---|---|');
for (const c of levels) {
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: c }, one));
  const wall = (performance.now() - t0) / 1000;
  const tokens = res.reduce((s, r) => s + r.tokens, 0);
  const per = res.map((r) => (r.tokens - 1) / ((r.total - r.ttft) / 1000));
  const ttft = res.map((r) => r.ttft);
  console.log(`| ${c} | ${tokens} | ${wall.toFixed(2)} | ${(tokens / wall).toFixed(1)} | ${(per.reduce((a, b) => a + b, 0) / c).toFixed(1)} | ${pct(ttft, 0.5).toFixed(0)} | ${Math.max(...ttft).toFixed(0)} |`);
}
server.proc.kill('SIGTERM');

// End-to-end test of `mlxcpp server` on the trained echo model (models/gemma3-tiny-echo, which
// replies with the user's message), driven by the official `openai` npm client and plain fetch.
// Expected replies follow from the model's training (its README: exact echo on held-out text)
// and from OpenAI's API reference for the response shapes.
// usage: node e2e.mjs <mlxcpp binary> <repo root> <node packages dir>
import fs from 'node:fs';
import { assert, assertEq, health, loadPackage, run, sleep, startServer, stopServer } from './harness.mjs';

const [bin, root, nodeDir] = process.argv.slice(2);
const model = `${root}/models/gemma3-tiny-echo`;
const mod = await loadPackage(nodeDir, 'openai');
const OpenAI = mod.OpenAI ?? mod.default?.OpenAI ?? mod.default;
const reference = JSON.parse(fs.readFileSync(`${root}/tests/data/gemma3/copy_trained/reference.json`, 'utf8'));

const server = await startServer(bin, model, ['--served-model-name', 'echo', '--max-body-bytes', '200000',
  '--decode-concurrency', '8']);
const client = new OpenAI({ baseURL: server.baseURL + '/v1', apiKey: 'unused', maxRetries: 0 });
const user = (content) => [{ role: 'user', content }];

async function post(path, body, headers = {}) {
  const r = await fetch(server.baseURL + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

function checkError(r, status, param) {
  assertEq(r.status, status, 'status of ' + r.text);
  const e = r.json && r.json.error;
  assert(e && typeof e.message === 'string' && 'type' in e && 'param' in e && 'code' in e,
    'OpenAI error shape: ' + r.text);
  if (param !== undefined) assertEq(e.param, param, 'error param');
}

const schema = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 10 },
    days: { type: 'integer' },
    unit: { enum: ['celsius', 'fahrenheit'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 4 }, maxItems: 3 },
  },
  required: ['city', 'days', 'unit', 'tags'],
  additionalProperties: false,
};
function validate(v) {
  assert(v && typeof v === 'object' && !Array.isArray(v), 'an object');
  assertEq(Object.keys(v).sort(), ['city', 'days', 'tags', 'unit'], 'keys');
  assert(typeof v.city === 'string' && [...v.city].length <= 10, 'city');
  assert(Number.isInteger(v.days), 'days is an integer');
  assert(['celsius', 'fahrenheit'].includes(v.unit), 'unit');
  assert(Array.isArray(v.tags) && v.tags.length <= 3 && v.tags.every((t) => typeof t === 'string' && [...t].length <= 4), 'tags');
}
const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] },
  },
};

await run([
  ['models', async () => {
    const list = await client.models.list();
    assertEq(list.data.map((m) => m.id), ['echo'], 'model ids');
    assertEq(list.data[0].object, 'model', 'object');
  }],
  ['health', async () => assertEq((await health(server.baseURL)).status, 'ok', 'health')],
  ['model by id, CORS preflight', async () => {
    assertEq((await client.models.retrieve('echo')).id, 'echo', 'retrieve');
    const r = await fetch(server.baseURL + '/v1/chat/completions', { method: 'OPTIONS',
      headers: { Origin: 'http://example.test', 'Access-Control-Request-Method': 'POST' } });
    assertEq(r.status, 204, 'preflight status');
    assertEq(r.headers.get('access-control-allow-origin'), '*', 'allowed origin');
    assert(r.headers.get('access-control-allow-methods').includes('POST'), 'allowed methods');
  }],
  ['chat', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: user('hello world') });
    assertEq(r.object, 'chat.completion', 'object');
    assert(r.id.startsWith('chatcmpl-'), 'id');
    assertEq(r.choices[0].message, { role: 'assistant', content: 'hello world', refusal: null }, 'message');
    assertEq(r.choices[0].finish_reason, 'stop', 'finish_reason');
    assertEq(r.usage.completion_tokens, 12, 'completion tokens: 11 characters and <end_of_turn>');
    assertEq(r.usage.total_tokens, r.usage.prompt_tokens + 12, 'total');
    assertEq(r.usage.prompt_tokens_details.cached_tokens, 0, 'nothing cached yet');
  }],
  ['prompt cache reuse', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: user('hello world') });
    assertEq(r.choices[0].message.content, 'hello world', 'content');
    assertEq(r.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens - 1, 'cached tokens');
  }],
  ['multi-turn', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: [
      { role: 'user', content: 'hello world' }, { role: 'assistant', content: 'hello world' },
      { role: 'user', content: [{ type: 'text', text: 'second ' }, { type: 'text', text: 'turn' }] }] });
    // The model was trained on single turns only: its reply is not checked here, only the reuse.
    assert(typeof r.choices[0].message.content === 'string', 'a text reply');
    assert(r.usage.prompt_tokens_details.cached_tokens > 10, 'the first turn came from the cache');
    const p = await client.chat.completions.create({ model: 'echo', messages: [
      { role: 'user', content: [{ type: 'text', text: 'content ' }, { type: 'text', text: 'parts' }] }] });
    assertEq(p.choices[0].message.content, 'content parts', 'content parts joined');
  }],
  ['stream with usage', async () => {
    const stream = await client.chat.completions.create({ model: 'echo', messages: user('streaming works'),
      stream: true, stream_options: { include_usage: true } });
    let text = '', chunks = [], usage = null, finish = null;
    for await (const c of stream) {
      chunks.push(c);
      assertEq(c.object, 'chat.completion.chunk', 'chunk object');
      if (c.usage) { usage = c.usage; assertEq(c.choices, [], 'usage chunk has no choices'); continue; }
      const ch = c.choices[0];
      if (ch.delta.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assertEq(chunks[0].choices[0].delta.role, 'assistant', 'first delta has the role');
    assertEq(text, 'streaming works', 'streamed text');
    assertEq(finish, 'stop', 'finish reason');
    assert(usage && usage.completion_tokens === 16 && 'cached_tokens' in usage.prompt_tokens_details, 'usage');
  }],
  ['raw SSE ends with [DONE]', async () => {
    const r = await fetch(server.baseURL + '/v1/chat/completions', { method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: user('abc'), stream: true }) });
    assertEq(r.headers.get('content-type'), 'text/event-stream', 'content type');
    const body = await r.text();
    assert(body.trimEnd().endsWith('data: [DONE]'), 'last event is [DONE]: ' + body.slice(-80));
  }],
  ['completions (text and token ids)', async () => {
    const t = await client.completions.create({ model: 'echo',
      prompt: '<start_of_turn>user\nplain prompt<end_of_turn>\n<start_of_turn>model\n', max_tokens: 40 });
    assertEq(t.object, 'text_completion', 'object');
    assertEq(t.choices[0].text, 'plain prompt', 'text prompt');
    const ids = reference.prompt_tokens[0];
    const want = reference.decoded_greedy[0].split('<end_of_turn>')[0];
    const k = await client.completions.create({ model: 'echo', prompt: ids, max_tokens: 40 });
    assertEq(k.choices[0].text, want, 'token-id prompt gives transformers\' greedy reply');
    assertEq(k.usage.prompt_tokens, ids.length, 'prompt tokens');
    const s = await client.completions.create({ model: 'echo', prompt: ids, max_tokens: 5, stream: true });
    let text = '';
    for await (const c of s) { assertEq(c.object, 'text_completion', 'chunk object'); text += c.choices[0]?.text ?? ''; }
    assertEq(text, want.slice(0, 5), 'streamed completion with max_tokens 5');
  }],
  ['logprobs', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: user('logp'), logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0].logprobs.content;
    assertEq(lp.length, r.usage.completion_tokens, 'one entry per token');
    assertEq(lp.slice(0, 4).map((e) => e.token).join(''), 'logp', 'tokens');
    for (const e of lp) {
      assert(e.logprob <= 0 && e.top_logprobs.length === 3, 'entry shape');
      assertEq(e.top_logprobs[0].token, e.token, 'greedy picks the top candidate');
      assert(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob && e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob, 'sorted');
      assertEq(e.bytes, [...Buffer.from(e.token, 'utf8')], 'bytes');
    }
    const c = await client.completions.create({ model: 'echo', prompt: reference.prompt_tokens[1], max_tokens: 3, logprobs: 2 });
    const l = c.choices[0].logprobs;
    assert(l.tokens.length === 3 && l.token_logprobs.length === 3 && Object.keys(l.top_logprobs[0]).length === 2, 'completion logprobs');
  }],
  ['stop', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: user('abc def ghi'), stop: [' gh', 'zzz'] });
    assertEq(r.choices[0].message.content, 'abc def', 'cut at the stop string');
    assertEq(r.choices[0].finish_reason, 'stop', 'finish');
    const m = await client.chat.completions.create({ model: 'echo', messages: user('abcdefgh'), max_tokens: 3 });
    assertEq([m.choices[0].message.content, m.choices[0].finish_reason], ['abc', 'length'], 'max_tokens');
  }],
  ['json_schema', async () => {
    for (const temperature of [0, 1]) {
      const r = await client.chat.completions.create({ model: 'echo', messages: user('weather in oslo'), temperature, seed: 3,
        max_tokens: 200, response_format: { type: 'json_schema', json_schema: { name: 'w', schema, strict: true } } });
      validate(JSON.parse(r.choices[0].message.content));
      assertEq(r.choices[0].finish_reason, 'stop', 'complete document');
    }
  }],
  ['json_object', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: user('anything'), max_tokens: 100,
      response_format: { type: 'json_object' } });
    const text = r.choices[0].message.content;
    if (r.choices[0].finish_reason === 'stop') {
      const v = JSON.parse(text);
      assert(v && typeof v === 'object' && !Array.isArray(v), 'an object');
    } else {
      assert(text.startsWith('{'), 'a JSON object cut by max_tokens');
    }
  }],
  ['tools', async () => {
    const r = await client.chat.completions.create({ model: 'echo', messages: user('weather in paris?'),
      tools: [weatherTool], tool_choice: 'required', max_tokens: 100 });
    const ch = r.choices[0];
    assertEq(ch.finish_reason, 'tool_calls', 'finish reason');
    assertEq(ch.message.content, null, 'no content');
    const call = ch.message.tool_calls[0];
    assertEq([call.type, call.function.name], ['function', 'get_weather'], 'call');
    assert(call.id.startsWith('call_'), 'call id');
    const args = JSON.parse(call.function.arguments);
    assert(typeof args.city === 'string' && [...args.city].length <= 12, 'arguments validate');
    const s = await client.chat.completions.create({ model: 'echo', messages: user('weather?'),
      tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } }, stream: true, max_tokens: 100 });
    let calls = [], finish = null;
    for await (const c of s) {
      const d = c.choices[0];
      if (d?.delta?.tool_calls) calls.push(...d.delta.tool_calls);
      if (d?.finish_reason) finish = d.finish_reason;
    }
    assertEq([calls.length, calls[0].index, calls[0].function.name, finish], [1, 0, 'get_weather', 'tool_calls'], 'streamed call');
    // A tool result in the history renders and the model answers in text.
    const t = await client.chat.completions.create({ model: 'echo', tools: [weatherTool], tool_choice: 'none', messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"x"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' }] });
    assert(typeof t.choices[0].message.content === 'string', 'text reply after a tool result');
  }],
  ['errors', async () => {
    checkError(await post('/v1/chat/completions', '{"messages": [', {}), 400);
    checkError(await post('/v1/chat/completions', '[1,2]'), 400);
    checkError(await post('/v1/chat/completions', '{"messages":' + '['.repeat(50000) + ']'.repeat(50000) + '}'), 400);
    checkError(await post('/v1/chat/completions', { messages: user('x'), n: 2 }), 400, 'n');
    checkError(await post('/v1/chat/completions', { messages: user('x'), max_tokens: 'ten' }), 400, 'max_tokens');
    checkError(await post('/v1/chat/completions', { messages: user('x'), temperature: -3 }), 400, 'temperature');
    checkError(await post('/v1/chat/completions', { messages: 'x' }), 400, 'messages');
    checkError(await post('/v1/completions', { prompt: [1, -5] }), 400, 'prompt[1]');
    checkError(await post('/v1/completions', { prompt: [999999] }), 400);
    const over = await post('/v1/chat/completions', { messages: user('x'.repeat(600)) });
    checkError(over, 400, 'messages');
    assertEq(over.json.error.code, 'context_length_exceeded', 'code');
    checkError(await post('/v1/chat/completions', { messages: user('y'.repeat(300000)) }), 413);
    checkError(await post('/v1/nothing', {}), 404);
    let caught = null;
    try { await client.chat.completions.create({ model: 'gpt-4o', messages: user('x') }); } catch (e) { caught = e; }
    assert(caught && caught.status === 404 && caught.code === 'model_not_found', 'unknown model: ' + caught);
    const ok = await client.chat.completions.create({ model: 'echo', messages: user('still alive') });
    assertEq(ok.choices[0].message.content, 'still alive', 'served after errors');
  }],
  ['chat page', async () => {
    const r = await fetch(server.baseURL + '/');
    const html = await r.text();
    assert(r.status === 200 && html.includes('<title>mlxcpp chat</title>'), 'page');
    assert(!/(src|href)=["']?https?:/i.test(html), 'no external resources');
  }],
  ['client disconnect cancels', async () => {
    const before = await health(server.baseURL);
    const ac = new AbortController();
    const r = await fetch(server.baseURL + '/v1/completions', { method: 'POST', signal: ac.signal,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'z', max_tokens: 400, stream: true, logit_bias: { 1: -100, 5: -100 } }) });
    const reader = r.body.getReader();
    await reader.read();
    ac.abort();
    let h;
    for (let i = 0; i < 50; i++) {
      await sleep(100);
      h = await health(server.baseURL);
      if (h.cancelled > before.cancelled && h.decoding === 0) break;
    }
    assert(h.cancelled === before.cancelled + 1 && h.decoding === 0, 'cancelled and freed: ' + JSON.stringify(h));
  }],
  ['api key', async () => {
    const keyed = await startServer(bin, model, ['--api-key', 'sekret']);
    try {
      const no = await fetch(keyed.baseURL + '/v1/models');
      assertEq(no.status, 401, 'no key');
      const body = await no.json();
      assertEq(body.error.code, 'invalid_api_key', 'code');
      const bad = new OpenAI({ baseURL: keyed.baseURL + '/v1', apiKey: 'wrong', maxRetries: 0 });
      let caught = null;
      try { await bad.models.list(); } catch (e) { caught = e; }
      assertEq(caught && caught.status, 401, 'wrong key');
      const good = new OpenAI({ baseURL: keyed.baseURL + '/v1', apiKey: 'sekret', maxRetries: 0 });
      const r = await good.chat.completions.create({ messages: user('keyed'), model: 'x'.length ? (await good.models.list()).data[0].id : '' });
      assertEq(r.choices[0].message.content, 'keyed', 'with the key');
      assertEq((await fetch(keyed.baseURL + '/health')).status, 200, '/health needs no key');
    } finally {
      assertEq(await stopServer(keyed), 0, 'exit code');
    }
  }],
  ['graceful shutdown', async () => {
    // A stream in flight ends when the server stops; the process exits 0.
    const stream = await client.completions.create({ prompt: 'z', max_tokens: 400, stream: true,
      logit_bias: { 1: -100, 5: -100 } });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const code = await stopServer(server);
    assertEq(code, 0, 'exit code after SIGTERM');
  }],
], async () => { if (server.proc.exitCode === null) server.proc.kill('SIGKILL'); });

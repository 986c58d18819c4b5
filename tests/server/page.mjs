// The chat page (GET /) in headless Chromium through playwright-core: type a message, press
// Enter, and the streamed answer (the echo model repeats it) appears; a second message too.
// usage: node page.mjs <mlxcpp binary> <repo root> <node packages dir>
import fs from 'node:fs';
import { SKIP, assert, assertEq, loadPackage, run, startServer, stopServer } from './harness.mjs';

const [bin, root, nodeDir] = process.argv.slice(2);
const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']
  .find((p) => fs.existsSync(p));
if (!chromium) {
  console.log('SKIP: no Chromium found (Debian package chromium)');
  process.exit(SKIP);
}
const pw = await loadPackage(nodeDir, 'playwright-core');
const launcher = (pw.chromium ?? pw.default.chromium);
const server = await startServer(bin, `${root}/models/gemma3-tiny-echo`);
let browser;
await run([
  ['page streams answers', async () => {
    browser = await launcher.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox'] });
    const page = await browser.newPage();
    const external = [];
    page.on('request', (r) => { if (!r.url().startsWith(server.baseURL)) external.push(r.url()); });
    await page.goto(server.baseURL + '/');
    assertEq(await page.title(), 'mlxcpp chat', 'title');
    for (const [i, text] of ['hello from the page', 'another line'].entries()) {
      await page.fill('#input', text);
      await page.press('#input', 'Enter');
      const answer = page.locator('.msg.assistant').nth(i);
      // The model was trained on single turns: the first reply is its echo; later ones just arrive.
      if (i === 0) {
        await answer.filter({ hasText: text }).waitFor({ timeout: 30000 });
        assertEq(await answer.textContent(), text, 'streamed answer');
      } else {
        await page.waitForFunction(() => document.getElementById('stats').textContent.includes('tokens, '),
          null, { timeout: 30000 });
      }
    }
    assertEq(await page.locator('.msg.user').count(), 2, 'two user messages');
    assertEq(await page.locator('.msg.error').count(), 0, 'no errors');
    assert(external.length === 0, 'no external requests: ' + external.join(', '));
  }],
], async () => {
  if (browser) await browser.close();
  await stopServer(server);
});

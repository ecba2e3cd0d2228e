// The chat and the console in headless Chromium (playwright-core). Each check prints PASS/FAIL;
// the process exits 1 if any failed. Arguments: base URL, chromium path, playwright-core's
// index.mjs, artifact dir, user key, owner (admin) key, scraper key, the hostile reply's text.
const [base, chromiumPath, playwrightPath, artifacts, userKey, ownerKey, scraperKey, hostile] = process.argv.slice(2);
const { chromium } = await import(playwrightPath);

let failed = 0;
function check(ok, what) {
  console.log(`${ok ? 'PASS' : 'FAIL'}: ${what}`);
  if (!ok) failed++;
}

const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
let dialogs = 0;
const pageErrors = [];
page.on('dialog', (d) => { dialogs++; d.dismiss(); });
page.on('pageerror', (e) => pageErrors.push(e.message));
// Script errors and CSP violations; a refused request (401/403, expected here) is not one.
page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text()); });

try {
  // --- chat: the server needs a key; the page says so and takes one
  await page.goto(base + '/');
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('API key'));
  check(true, 'the page asks for an API key when the server needs one');
  await page.evaluate(() => { document.getElementById('settings').open = true; });
  await page.fill('#api-key', userKey);
  await page.press('#api-key', 'Tab');
  await page.waitForFunction(() => document.getElementById('model-name').textContent.length > 0);
  await page.fill('#temperature', '0');
  await page.fill('#max_tokens', '80');

  // send a message; the hostile reply streams in and is shown as text
  await page.fill('#input', 'hi');
  await page.press('#input', 'Enter');
  await page.waitForSelector('#stop:not([hidden])', { timeout: 5000 }).catch(() => {});
  await page.waitForSelector('.msg.assistant .meta', { timeout: 60000 });
  const reply = await page.textContent('.msg.assistant .text');
  check(reply.includes('<script>alert(1)</script>'), `the reply's <script> is shown as text (${JSON.stringify(reply.slice(0, 70))})`);
  check(reply.includes('<img src=x onerror=alert(2)>'), 'the reply\'s <img onerror> is shown as text');
  const planted = await page.$$eval('#messages script, #messages img', (els) => els.length);
  check(planted === 0 && dialogs === 0, `no element was made from the reply and nothing ran (elements ${planted}, dialogs ${dialogs})`);
  check(await page.$$eval('.msg.assistant strong', (els) => els.length) === 1, 'markdown **bold** is rendered (as an element made by the page)');
  const meta = await page.textContent('.msg.assistant .meta');
  check(/\d+ tokens · [\d.]+ tokens\/s/.test(meta), `tokens and tokens/s are shown (${meta})`);

  // stop a generation: the network slowed to 1 kB/s (Chrome DevTools Protocol) so that the
  // stream is still arriving when Stop is pressed, whatever the tiny model's length
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 1000, uploadThroughput: 100000 });
  await page.click('#new-chat');
  await page.fill('#max_tokens', '1500');
  await page.fill('#temperature', '1');
  await page.fill('#input', 'tell me a long story');
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => (document.querySelector('.msg.assistant .text')?.textContent.length ?? 0) > 0, null, { timeout: 30000 });
  await page.click('#stop');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await page.waitForSelector('.msg.assistant .meta', { timeout: 10000 });
  const stopMeta = await page.textContent('.msg.assistant .meta');
  const stoppedAt = Number(stopMeta.split(' ')[0]);
  check(stopMeta.includes('stopped') && stoppedAt < 1500, `Stop ends the answer (${stopMeta})`);
  check(await page.isVisible('#send') && !(await page.isVisible('#stop')), 'the composer is ready again');

  // reload: both conversations are still there, and the first one's messages too
  await page.reload();
  await page.waitForSelector('#conversations li');
  const titles = await page.$$eval('#conversations li button.open', (els) => els.map((e) => e.textContent));
  check(titles.length === 2 && titles.includes('hi'), `conversations survive a reload (${JSON.stringify(titles)})`);
  await page.click('#conversations li button.open >> text=hi');
  const restored = await page.textContent('.msg.assistant .text');
  check(restored.includes('<script>alert(1)</script>'), 'the conversation\'s messages are restored');
  await page.screenshot({ path: artifacts + '/chat.png' });
  await page.setViewportSize({ width: 390, height: 760 });
  check(await page.isVisible('#toggle-sidebar') && !(await page.isVisible('#sidebar')), 'phone width: the conversations fold behind a button');
  await page.click('#toggle-sidebar');
  check(await page.isVisible('#sidebar'), 'phone width: the button opens them');
  await page.screenshot({ path: artifacts + '/chat-phone.png' });
  await page.setViewportSize({ width: 1100, height: 760 });

  // --- console: refused without an admin key
  await page.goto(base + '/console');
  check(!(await page.isVisible('#panels')), 'the console shows nothing without a key');
  await page.fill('#admin-key', userKey);
  await page.click('#login button');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
  check((await page.textContent('#login-error')).includes('not an admin key'), 'a non-admin key is refused with the reason');
  const direct = await fetch(base + '/v1/console');
  check(direct.status === 401, `the console's JSON refuses without a key (${direct.status})`);

  // a scraper at work (from outside the browser): template prompts asking for log-probabilities
  for (let i = 0; i < 24; i++) {
    await fetch(base + '/v1/chat/completions', {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + scraperKey },
      body: JSON.stringify({ model: 'model', messages: [{ role: 'user', content: `Answer in one sentence. Question: what is item ${i}?` }],
                             max_tokens: 1, temperature: 0, logprobs: true, top_logprobs: 5 }),
    });
  }
  await page.fill('#admin-key', ownerKey);
  await page.click('#login button');
  await page.waitForSelector('#panels:not([hidden])');
  // the last chat's usage is recorded as its answer ends and may land after the first load: the
  // console refreshes every 5 s (a fresh-clone CI once read 1 request here)
  await page.waitForFunction(() => /\b2\b/.test(document.querySelector('#keys tr[data-key="user"]')?.textContent || ''),
                             null, { timeout: 12000 }).catch(() => {});
  const userRow = await page.textContent('#keys tr[data-key="user"]');
  check(/\b2\b/.test(userRow), `the user's usage is shown (${userRow.replace(/\s+/g, ' ').trim()})`);
  check(await page.$$eval('#keys svg.chart', (els) => els.length) === 3, 'a usage chart per key');
  const guardRow = await page.textContent('#guard tr[data-key="scraper"]');
  check(/alert|strip_logprobs|throttle|block/.test(guardRow) && guardRow.includes('of requests ask for log-probabilities'),
        `the scraper's guard alert and reasons are shown (${guardRow.replace(/\s+/g, ' ').trim().slice(0, 140)})`);
  await page.waitForSelector('#runs tr[data-run="model"] svg.chart polyline');
  check(true, 'the training run that made the served model is listed with its loss curve');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#runs tr[data-run="model"] button')]);
  const reportPath = artifacts + '/model-report.html';
  await download.saveAs(reportPath);
  const report = (await import('node:fs')).readFileSync(reportPath, 'utf8');
  check(report.includes('<h2>Summary</h2>') && report.includes('--accent'), 'its report.html downloads, in the console\'s style');
  check((await fetch(base + '/v1/console/runs/report?name=../keys.json', { headers: { Authorization: 'Bearer ' + ownerKey } })).status === 404,
        'a report name outside the listing is refused');
  await page.screenshot({ path: artifacts + '/console.png', fullPage: true });
  await page.click('#guard tr[data-key="scraper"] button >> text=reset');
  await page.waitForFunction(() => document.querySelector('#guard tr[data-key="scraper"] td:nth-child(2)')?.textContent.startsWith('none'));
  check(true, 'one click resets the scraper\'s level');
  check(pageErrors.length === 0, `no script errors or CSP violations (${JSON.stringify(pageErrors.slice(0, 3))})`);
} catch (e) {
  check(false, 'the run ended early: ' + e.message);
  await page.screenshot({ path: artifacts + '/failure.png' }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);

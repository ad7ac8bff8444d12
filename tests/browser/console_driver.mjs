// Drives Debian's chromium (headless, playwright-core, no browser download)
// through the web console against the servers console_test.py started.
// Every step asserts on what the page shows; mosquitto_pub and mosquitto_sub
// are the MQTT peers on the other side of the proxy.
// Usage: node console_driver.mjs '<json config from console_test.py>'
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
const run = promisify(execFile);
const WAIT = { timeout: 20000 };

function step(name) {
  console.log(`-- ${name}`);
}

// Asks console_test.py to act on the servers (restart-proxy, change-password); resolves when done.
const replies = createInterface({ input: process.stdin });
const answers = replies[Symbol.asyncIterator]();
async function ask(request) {
  console.log('@' + request);
  const { value } = await answers.next();
  assert.equal(value, 'ok', `console_test.py did not do ${request}`);
}

async function session() {
  const response = await fetch(`${config.auth_origin}/v1/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: config.user, password: config.password }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).session;
}

// mosquitto_sub through the proxy (session as the password); resolves once its
// SUBACK arrived, to {done}: a promise of its exit status and output.
async function subscriber(topic) {
  // Line-buffered, so its debug line for the SUBACK arrives before it exits.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(config.tcp_port), '-u', config.user,
    '-P', await session(), '-i', 'browser-test-sub', '-t', topic, '-q', '1', '-C', '1', '-W', '20', '-v', '-d']);
  let out = '';
  const done = new Promise((resolve) => child.on('exit', (code) => resolve({ code, out })));
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  for (let i = 0; i < 100 && !out.includes('SUBACK'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, /SUBACK/, 'mosquitto_sub did not get its SUBACK: ' + out);
  return { done };  // not the promise itself: an async function would wait for it
}

async function publishWithMosquitto(topic, message) {
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(config.tcp_port), '-u', config.user,
    '-P', await session(), '-i', 'browser-test-pub', '-t', topic, '-m', message, '-q', '1'], { timeout: 15000 });
}

async function logIn(page, password = config.password) {
  await page.fill('#username', config.user);
  await page.fill('#password', password);
  await page.click('#login');
}

const pages = [];

async function openConsole(browser, url, options = {}) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 820 }, ...options });
  pages.push(page);
  page.on('pageerror', (e) => console.log('page error:', e.message));
  await page.goto(url);
  await page.waitForFunction(() => typeof window.mqtt !== 'undefined', null, WAIT);
  return page;
}

const text = (page, selector) => page.locator(selector).innerText();

async function mainFlow(browser) {
  const page = await openConsole(browser, `${config.auth_origin}/console/?mqtt=${encodeURIComponent(config.ws_url)}`);

  step('a wrong password is refused, and the page says so');
  await logIn(page, 'not-the-password');
  await page.waitForSelector('#login-error:has-text("wrong user name or password")', WAIT);
  assert.equal(await page.getAttribute('#status', 'data-state'), 'logged-out');

  step('log in: session from /v1/login, ACL from validate, auth PUBLISH over ws://, online');
  await logIn(page);
  await page.waitForSelector('#status[data-state="online"]', WAIT);
  assert.equal(await text(page, '#status'), `online as ${config.user}`);
  for (const filter of [`private/${config.user}/#`, `group/${config.user}/#`]) {
    await page.waitForSelector(`#subscriptions li[data-filter="${filter}"][data-state="granted"]`, WAIT);
  }
  assert.match(await text(page, '#acl-publish'), /private\/demo\/#/);

  step('a message published by mosquitto_pub through the proxy arrives, with its topic and QoS');
  await publishWithMosquitto('private/demo/inbox', 'hello from mosquitto_pub');
  await publishWithMosquitto('group/demo/news', 'the group channel works too');
  const row = page.locator('#messages tbody tr', { hasText: 'hello from mosquitto_pub' });
  await row.waitFor(WAIT);
  assert.equal(await row.locator('td.topic').innerText(), 'private/demo/inbox');
  assert.equal((await row.locator('td.qos').innerText()).trim(), '1');
  await page.locator('#messages tbody tr', { hasText: 'the group channel works too' }).waitFor(WAIT);

  step('the page publishes; mosquitto_sub through the proxy receives it');
  const { done: received } = await subscriber('private/demo/outbox');
  await page.fill('#pub-topic', 'private/demo/outbox');
  await page.fill('#pub-payload', 'hello from chromium');
  await page.selectOption('#pub-qos', '1');
  await page.click('#publish');
  await page.waitForSelector('#publications li[data-topic="private/demo/outbox"][data-state="granted"]', WAIT);
  const { code, out } = await received;
  assert.equal(code, 0, out);
  assert.match(out, /^private\/demo\/outbox hello from chromium$/m);

  step('a subscription outside the ACL is shown as denied, with the SUBACK reason code');
  await page.fill('#sub-filter', 'private/someone-else/#');
  await page.click('#subscribe');
  const denied = page.locator('#subscriptions li[data-filter="private/someone-else/#"][data-state="denied"]');
  await denied.waitFor(WAIT);
  assert.match(await denied.innerText(), /denied: 0x87 Not authorized/);
  // The granted ones stay granted: the denial removed only that filter.
  assert.equal(await page.locator('#subscriptions li[data-state="granted"]').count(), 2);

  step('a publish outside the ACL is shown as refused, with the 5.0 PUBACK reason code');
  await page.fill('#pub-topic', 'private/someone-else/inbox');
  await page.fill('#pub-payload', 'not mine to send');
  await page.click('#publish');
  const refused = page.locator('#publications li[data-topic="private/someone-else/inbox"][data-state="denied"]');
  await refused.waitFor(WAIT);
  assert.match(await refused.innerText(), /refused: 0x87 Not authorized: outside your publish ACL/);

  step('the session token is never shown in full');
  const token = await page.evaluate(() => document.body.innerText);
  const sessions = token.match(/[A-Za-z0-9_-]{43}/g) || [];
  assert.deepEqual(sessions, [], 'something that looks like a session token is on the page');

  await page.fill('#pub-topic', 'group/demo/news');
  await page.fill('#pub-payload', '{"temperature": 21.5}');
  await page.locator('#pub-payload').blur();
  const screenshot = join(config.output, 'console.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log('screenshot', screenshot);

  step('reconnect: the proxy restarts; the page reconnects, authenticates again and resubscribes');
  await ask('restart-proxy');
  await page.waitForSelector('#events li:has-text("the connection to the proxy closed")', WAIT);
  await page.waitForSelector('#status[data-state="online"]', WAIT);
  await page.waitForSelector(`#subscriptions li[data-filter="private/demo/#"][data-state="granted"]`, WAIT);
  await page.waitForSelector(`#subscriptions li[data-filter="group/demo/#"][data-state="granted"]`, WAIT);
  await page.waitForSelector('#subscriptions li[data-filter="private/someone-else/#"][data-state="denied"]', WAIT);
  assert.equal(await page.locator('#events li:has-text("the proxy accepted the session")').count(), 2);
  await publishWithMosquitto('private/demo/inbox', 'after the reconnect');
  await page.locator('#messages tbody tr', { hasText: 'after the reconnect' }).waitFor(WAIT);

  step('the session is revoked (password changed): the page says why and asks for a new login');
  await ask('change-password');
  await page.waitForSelector('#status[data-state="logged-out"]', WAIT);
  assert.match(await text(page, '#login-error'), /session_revoked.*please log in again/);
  config.password = config.new_password;
  await logIn(page);
  await page.waitForSelector('#status[data-state="online"]', WAIT);

  step('log out: the session is revoked and the page is back at the login form');
  await page.click('#logout');
  await page.waitForSelector('#status[data-state="logged-out"]', WAIT);
  await page.close();
}

async function secureWebSocket(browser) {
  step('wss://: the page connects over WebSocket over TLS, and messages arrive');
  // The proxy's certificate comes from a CA console_test.py made: accepted for this page only.
  const page = await openConsole(browser,
    `${config.auth_origin}/console/?mqtt=${encodeURIComponent(config.wss_url)}`, { ignoreHTTPSErrors: true });
  await logIn(page);
  await page.waitForSelector('#status[data-state="online"]', WAIT);
  await page.waitForSelector(`#subscriptions li[data-filter="private/demo/#"][data-state="granted"]`, WAIT);
  await publishWithMosquitto('private/demo/inbox', 'over wss');
  await page.locator('#messages tbody tr', { hasText: 'over wss' }).waitFor(WAIT);
  await page.click('#logout');
  await page.waitForSelector('#status[data-state="logged-out"]', WAIT);
  await page.close();
}

async function crossOrigin(browser) {
  const query = `?api=${encodeURIComponent(config.auth_origin)}&mqtt=${encodeURIComponent(config.ws_url)}`;

  step('CORS: a page on an allowed origin (--cors-origin) logs in and connects');
  const allowed = await openConsole(browser, `http://127.0.0.1:${config.static_port}/index.html${query}`);
  await logIn(allowed);
  await allowed.waitForSelector('#status[data-state="online"]', WAIT);
  await allowed.click('#logout');
  await allowed.waitForSelector('#status[data-state="logged-out"]', WAIT);
  await allowed.close();

  step('CORS: a page on any other origin cannot read the API server\'s answers');
  const refused = await openConsole(browser, `http://localhost:${config.static_port}/index.html${query}`);
  await logIn(refused);
  await refused.waitForSelector('#login-error:has-text("cannot reach the API server")', WAIT);
  assert.match(await text(refused, '#login-error'), /does not allow this page's origin \(http:\/\/localhost:/);
  assert.equal(await refused.getAttribute('#status', 'data-state'), 'logged-out');
  await refused.close();

  step('the proxy refuses a WebSocket from an origin not in allowed_origins');
  // Same server, same files, but the origin http://localhost:<port> is not listed.
  const hostile = await openConsole(browser,
    `http://localhost:${config.auth_port}/console/?mqtt=${encodeURIComponent(config.ws_url)}`);
  await logIn(hostile);
  await hostile.waitForSelector('#events li:has-text("could not connect to")', WAIT);
  assert.match(await text(hostile, '#events'), /allowed_origins does not list this page's origin \(http:\/\/localhost:/);
  assert.notEqual(await hostile.getAttribute('#status', 'data-state'), 'online');
  await hostile.screenshot({ path: join(config.output, 'console-refused-origin.png') });
  await hostile.close();
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],  // root in a container has no user namespaces
});
try {
  await mainFlow(browser);
  await secureWebSocket(browser);
  await crossOrigin(browser);
  console.log('all browser checks passed');
} catch (e) {
  console.error('FAILED:', e);
  process.exitCode = 1;
  // What the page showed, for the log.
  for (const page of pages.filter((p) => !p.isClosed())) {
    console.error(`---- ${page.url()}\n` + await page.locator('main').innerText().catch(() => '(unreadable)'));
    await page.screenshot({ path: join(config.output, 'failure.png'), fullPage: true }).catch(() => {});
  }
} finally {
  await browser.close();
  replies.close();  // stdin would keep node running
}

// Drives websockd's dev console page (crates/websockd/src/devconsole.html) in headless
// Chromium (Debian's, through playwright-core) the way a person would: clicks Connect, types
// a message and presses Enter, reads the log. Relies on the element ids and log-entry
// attributes documented at the top of the page.
//
// Usage: node devconsole.mjs CHROMIUM TIMEOUT_MS SCENARIO=PAGE_URL[,WS_URL] ...
//   PAGE_URL  where the page is served (http://...); its #url field must default to the same
//             URL with ws: (wss: for https:), host, path and query
//   WS_URL    typed into #url before connecting (a stand-in server); default: keep the default
// Scenarios (each in its own browser context, one after the other):
//   echo      the program echoes lines (cat): "hello" sent with Enter comes back as a text
//             entry; markup sent comes back as text (never as elements); Disconnect closes with
//             1000 and wasClean; Clear empties the log
//   binary    as echo, and then "hi!" sent as binary comes back as a 3-byte binary entry
//   exit3     the program answers one line ("got <line>") and exits with status 3: a received
//             "got hello", then a close entry with code 1011 and a reason containing "3"
// Exits 0 when every scenario passes; 1 with the reason otherwise.

import { chromium } from "playwright-core";

const [executablePath, timeoutArg, ...specs] = process.argv.slice(2);
if (!executablePath || !timeoutArg || specs.length === 0) {
  console.error("usage: node devconsole.mjs CHROMIUM TIMEOUT_MS SCENARIO=PAGE_URL[,WS_URL] ...");
  process.exit(2);
}
const timeout = Number(timeoutArg);

let browser = null;
async function fail(message) {
  console.error(`devconsole-test: FAIL: ${message}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
// Whatever happens, never hang: the whole run has a deadline.
const watchdog = setTimeout(
  () => fail(`no result within ${(specs.length + 1) * 2 * timeout} ms`),
  (specs.length + 1) * 2 * timeout,
);

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// The log as plain data: one object per entry.
async function entries(page) {
  return page.$$eval("#log > *", (els) =>
    els.map((e) => ({
      cls: e.className,
      dir: e.dataset.dir,
      kind: e.dataset.kind,
      attrs: { ...e.dataset },
      time: e.querySelector(".time")?.textContent,
      kindText: e.querySelector(".kind")?.textContent,
      data: e.querySelector(".data")?.textContent,
      elements: e.querySelectorAll(".data *").length,
    })),
  );
}

// Waits until an entry matching `want` is in the log, and returns it.
async function waitEntry(page, want, what) {
  try {
    await page.waitForFunction(
      (w) =>
        [...document.querySelectorAll("#log > .entry")].some(
          (e) =>
            e.dataset.dir === w.dir &&
            e.dataset.kind === w.kind &&
            (w.data === undefined || e.querySelector(".data")?.textContent === w.data),
        ),
      want,
      { timeout },
    );
  } catch {
    throw new Error(`no ${what} in the log within ${timeout} ms; the log:\n${await logText(page)}`);
  }
  const all = await entries(page);
  return all.find(
    (e) => e.dir === want.dir && e.kind === want.kind && (want.data === undefined || e.data === want.data),
  );
}

async function logText(page) {
  const all = await entries(page).catch(() => []);
  return all.map((e) => `  ${e.time}  ${e.dir}  ${e.kindText}  ${e.data}`).join("\n") || "  (empty)";
}

async function waitStatus(page, state) {
  try {
    await page.waitForFunction(
      (s) => document.getElementById("status").dataset.state === s,
      state,
      { timeout },
    );
  } catch {
    const now = await page.$eval("#status", (e) => e.dataset.state).catch(() => "?");
    throw new Error(`#status did not become ${state} within ${timeout} ms (it is ${now})`);
  }
  const text = await page.$eval("#status", (e) => e.textContent);
  check(text === state, `#status says "${text}", its data-state ${state}`);
}

async function disabled(page, id) {
  return page.$eval(`#${id}`, (e) => e.disabled);
}

async function sendText(page, text, { enter = false, asBinary = false } = {}) {
  await page.setChecked("#binary", asBinary, { timeout });
  await page.fill("#message", text, { timeout });
  if (enter) await page.press("#message", "Enter", { timeout });
  else await page.click("#send", { timeout });
}

async function connect(page, wsUrl) {
  const expected = new URL(page.url());
  expected.protocol = expected.protocol === "https:" ? "wss:" : "ws:";
  expected.hash = "";
  const shown = await page.inputValue("#url", { timeout });
  check(shown === expected.href, `#url defaults to "${shown}", expected "${expected.href}"`);
  await waitStatus(page, "closed");
  check(!(await disabled(page, "connect")), "#connect is disabled before connecting");
  check(await disabled(page, "send"), "#send is enabled before connecting");
  if (wsUrl) await page.fill("#url", wsUrl, { timeout });
  await page.click("#connect", { timeout });
  const open = await waitEntry(page, { dir: "event", kind: "open" }, "open event");
  await waitStatus(page, "open");
  check(await disabled(page, "connect"), "#connect is enabled while open");
  check(!(await disabled(page, "send")), "#send is disabled while open");
  check(/^\d\d:\d\d:\d\d\.\d{3}$/.test(open.time || ""), `entry time "${open.time}" is not HH:MM:SS.mmm`);
  check(open.cls === "entry", `an entry's class is "${open.cls}", not "entry"`);
  console.log(`  open: ${open.data}`);
}

async function echoScenario(page, wsUrl, withBinary) {
  await connect(page, wsUrl);

  await sendText(page, "hello", { enter: true });
  await waitEntry(page, { dir: "sent", kind: "text", data: "hello" }, 'sent text "hello" (Enter)');
  await waitEntry(page, { dir: "received", kind: "text", data: "hello" }, 'received text "hello"');
  console.log('  "hello" sent with Enter came back');

  const markup = '<b id="x">bold</b> & <img src=x onerror=alert(1)>';
  await sendText(page, markup);
  const back = await waitEntry(page, { dir: "received", kind: "text", data: markup }, "received markup, as text");
  check(back.elements === 0, "received markup became elements in the log");
  check((await page.$$("#log b, #log img")).length === 0, "received markup became elements in the log");
  console.log("  markup sent with Send came back as text");

  if (withBinary) {
    await sendText(page, "hi!", { asBinary: true });
    const sent = await waitEntry(page, { dir: "sent", kind: "binary" }, "sent binary entry");
    check(sent.attrs.length === "3", `sent binary entry has data-length ${sent.attrs.length}, expected 3`);
    const got = await waitEntry(page, { dir: "received", kind: "binary" }, "received binary entry");
    check(got.attrs.length === "3", `received binary entry has data-length ${got.attrs.length}, expected 3`);
    check(/\b3 bytes\b/.test(got.kindText), `binary entry kind says "${got.kindText}", not its 3 bytes`);
    check(got.data.includes("68 69 21") && got.data.includes("hi!"), `binary preview "${got.data}" lacks hex/printable`);
    console.log(`  binary "hi!" came back: ${got.kindText}: ${got.data}`);
    await page.setChecked("#binary", false, { timeout });
  }

  await page.click("#disconnect", { timeout });
  const close = await waitEntry(page, { dir: "event", kind: "close" }, "close event after Disconnect");
  await waitStatus(page, "closed");
  console.log(`  Disconnect: ${close.data}`);
  check(close.attrs.code === "1000", `Disconnect closed with code ${close.attrs.code}, expected 1000`);
  check(close.attrs.wasClean === "true", `Disconnect's close was not clean (wasClean ${close.attrs.wasClean})`);
  check(!(await disabled(page, "connect")), "#connect is disabled after the close");

  const log = await logText(page);
  await page.click("#clear", { timeout });
  const left = await page.$$eval("#log > *", (els) => els.length);
  check(left === 0, `Clear left ${left} entries`);
  return log;
}

async function exit3Scenario(page, wsUrl) {
  await connect(page, wsUrl);
  await sendText(page, "hello", { enter: true });
  await waitEntry(page, { dir: "received", kind: "text", data: "got hello" }, 'received text "got hello"');
  const close = await waitEntry(page, { dir: "event", kind: "close" }, "close event after the program exited");
  await waitStatus(page, "closed");
  console.log(`  the program exited: ${close.data}`);
  check(close.attrs.code === "1011", `close code ${close.attrs.code}, expected 1011 (the program exited 3)`);
  check((close.attrs.reason || "").includes("3"), `close reason "${close.attrs.reason}" does not contain the status 3`);
  check(close.data.includes("1011"), `the close entry's text "${close.data}" does not show the code`);
  return logText(page);
}

const scenarios = { echo: (p, u) => echoScenario(p, u, false), binary: (p, u) => echoScenario(p, u, true), exit3: exit3Scenario };

browser = await chromium.launch({
  executablePath,
  headless: true,
  timeout,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
for (const spec of specs) {
  const [name, urls] = spec.split(/=(.*)/s);
  const [pageUrl, wsUrl] = (urls || "").split(",");
  const run = scenarios[name];
  if (!run || !pageUrl) await fail(`bad scenario "${spec}" (known: ${Object.keys(scenarios).join(", ")})`);
  console.log(`devconsole-test: ${name}: ${pageUrl}${wsUrl ? ` (WebSocket: ${wsUrl})` : ""}`);
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  const requests = [];
  page.on("pageerror", (e) => problems.push(`uncaught exception in the page: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`  page console error: ${m.text()}`);
  });
  page.on("request", (r) => requests.push(r.url()));
  try {
    const response = await page.goto(pageUrl, { timeout, waitUntil: "load" });
    check(response && response.ok(), `GET ${pageUrl} answered ${response && response.status()}`);
    const type = response.headers()["content-type"] || "";
    check(type.startsWith("text/html"), `GET ${pageUrl} answered Content-Type "${type}", not text/html`);
    const log = await run(page, wsUrl);
    const others = requests.filter((u) => u !== pageUrl);
    check(others.length === 0, `the page fetched more than itself: ${others.join(" ")}`);
    check(problems.length === 0, problems.join("; "));
    console.log(`  the log:\n${log}`);
  } catch (e) {
    await fail(`${name} (${pageUrl}): ${e.message}`);
  }
  await context.close();
}
await browser.close();
clearTimeout(watchdog);
console.log(`devconsole-test: PASS: ${specs.map((s) => s.split("=")[0]).join(", ")}`);

// Opens the example server's page in headless Chromium (Debian's, driven by playwright-core)
// and proves that its WebSocket went over HTTP/2 (RFC 8441), from two independent sources:
//
// 1. DevTools (CDP): the page itself came over h2 (Network.responseReceived: protocol "h2")
//    and the WebSocket handshake was answered 200 (Network.webSocketHandshakeResponseReceived):
//    an RFC 8441 extended CONNECT is answered 200, an HTTP/1.1 upgrade 101.
// 2. Chromium's own net log (--log-net-log): an HTTP2_SESSION_SEND_HEADERS event whose headers
//    are ":method: CONNECT" with ":protocol: websocket" for the /ws path.
//
// Usage: node h2-websocket.mjs URL CHROMIUM NETLOG_FILE [TIMEOUT_MS]
// Exits 0 and prints "EVIDENCE ..." lines when both agree; 1 with the reason otherwise.

import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [url, executablePath, netlog, timeoutArg] = process.argv.slice(2);
if (!url || !executablePath || !netlog) {
  console.error("usage: node h2-websocket.mjs URL CHROMIUM NETLOG_FILE [TIMEOUT_MS]");
  process.exit(2);
}
const timeout = Number(timeoutArg || 30000);

function fail(message) {
  console.error(`browser-test: FAIL: ${message}`);
  process.exit(1);
}

// Whatever happens, never hang: the whole run has a deadline.
const watchdog = setTimeout(() => fail(`no result within ${2 * timeout} ms`), 2 * timeout);

const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--ignore-certificate-errors",
  `--log-net-log=${netlog}`,
  "--net-log-capture-mode=IncludeSensitive",
  ...(process.env.BROWSER_TEST_EXTRA_FLAGS || "").split(/\s+/).filter(Boolean),
];

const browser = await chromium.launch({ executablePath, headless: true, args, timeout });
const cdpEvents = { document: null, sockets: new Map() };
let echoed = null;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.responseReceived", (e) => {
    if (e.type === "Document") cdpEvents.document = e.response;
  });
  cdp.on("Network.webSocketCreated", (e) => {
    cdpEvents.sockets.set(e.requestId, { url: e.url });
  });
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    const s = cdpEvents.sockets.get(e.requestId) || {};
    s.status = e.response.status;
    s.headers = e.response.headers;
    cdpEvents.sockets.set(e.requestId, s);
  });
  page.on("console", (m) => console.error(`page console: ${m.text()}`));
  await page.goto(url, { timeout, waitUntil: "load" });
  await page.waitForFunction(() => Number(document.body.dataset.echoed || 0) >= 1, null, {
    timeout,
  });
  echoed = await page.evaluate(() => document.getElementById("log").innerText);
  await context.close();
} catch (e) {
  await browser.close().catch(() => {});
  fail(`the page did not show the echo: ${e.message.split("\n")[0]}`);
}
// Closing the browser writes out the net log.
await browser.close();

console.log(`page log:\n${echoed}`);
const doc = cdpEvents.document;
if (!doc) fail("DevTools saw no document response");
console.log(`EVIDENCE cdp: page ${doc.url} came over protocol=${doc.protocol}`);
const sockets = [...cdpEvents.sockets.values()];
if (sockets.length !== 1) fail(`expected one WebSocket, DevTools saw ${sockets.length}`);
const ws = sockets[0];
console.log(`EVIDENCE cdp: WebSocket ${ws.url} handshake answered status=${ws.status}`);

// The net log: JSON with constants (event type names to numbers) and events.
let log;
try {
  const text = readFileSync(netlog, "utf8").trim();
  // A log cut short (the browser killed) lacks its closing "]}": mend it.
  log = JSON.parse(text.endsWith("}") ? text : text.replace(/,?\s*$/, "]}"));
} catch (e) {
  fail(`cannot read the net log ${netlog}: ${e.message}`);
}
const types = log.constants.logEventTypes;
const sendHeaders = types.HTTP2_SESSION_SEND_HEADERS;
const connects = log.events.filter((e) => {
  if (e.type !== sendHeaders) return false;
  const headers = (e.params && e.params.headers) || [];
  return (
    headers.includes(":method: CONNECT") &&
    headers.includes(":protocol: websocket") &&
    headers.some((h) => h.startsWith(":path: /ws"))
  );
});
if (connects.length === 0) {
  const h2Sessions = log.events.filter((e) => e.type === types.HTTP2_SESSION).length;
  fail(
    `the net log has no HTTP/2 extended CONNECT for /ws (HTTP2_SESSION events: ${h2Sessions}); ` +
      `the WebSocket went over HTTP/1.1`,
  );
}
const headers = connects[0].params.headers;
console.log(
  `EVIDENCE netlog: HTTP2_SESSION_SEND_HEADERS stream_id=${connects[0].params.stream_id} ` +
    headers.filter((h) => /^:(method|protocol|path|scheme)/.test(h)).join(" "),
);

if (doc.protocol !== "h2") fail(`the page came over ${doc.protocol}, not h2`);
if (ws.status !== 200) fail(`the WebSocket handshake was answered ${ws.status}, not 200 (h2)`);
clearTimeout(watchdog);
console.log("browser-test: PASS: Chromium's WebSocket ran over HTTP/2 (RFC 8441)");

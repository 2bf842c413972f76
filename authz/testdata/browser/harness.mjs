// harness.mjs is what signin.mjs and demo.mjs share: Debian's Chromium
// launched with the flags this machine's closed network needs, and a
// browser context that records console messages, CSP violations,
// uncaught exceptions and failed or refused requests into a result object.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

// errorText is an error's message without Playwright's terminal colours.
export const errorText = (err) => String(err && err.message ? err.message : err).replace(/\x1b\[[0-9;]*m/g, "");

// bare reports a URL without its query string, which carries codes and
// state.
export const bare = (u) => {
  try {
    const x = new URL(u);
    return x.origin + x.pathname;
  } catch {
    return u;
  }
};

// launch starts headless Chromium from executablePath, never a downloaded
// one. Without the networking flags Chromium calls home at start-up, which
// this machine's closed network refuses. launch() gives each run a fresh
// temporary profile.
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: 30000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// newEvents returns the empty lists that instrument fills.
export function newEvents() {
  return {
    consoleErrors: [],   // console messages of type error, with their page
    consoleWarnings: [],
    cspViolations: [],   // securitypolicyviolation events on any page
    pageErrors: [],      // uncaught exceptions
    httpErrors: [],      // responses with status >= 400
    failedRequests: [],  // network failures, CORS refusals included
    fetches: [],         // fetch/XHR calls the pages made: method, URL, status
  };
}

// instrument records what every page of context does into events (as made
// by newEvents). tag() is called for each event and its fields are added
// to it, so a script can say which of its steps the event belongs to.
export async function instrument(context, events, tag = () => ({})) {
  const pageURL = (page) => (page ? bare(page.url()) : "");
  await context.exposeBinding("__authzReportCSP", ({ page }, v) => {
    events.cspViolations.push({ ...tag(), page: pageURL(page), ...v });
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__authzReportCSP({
        directive: e.violatedDirective,
        blocked: e.blockedURI,
        source: e.sourceFile,
        line: e.lineNumber,
        disposition: e.disposition,
      });
    });
  });
  context.on("console", (m) => {
    const loc = m.location();
    const entry = { ...tag(), page: pageURL(m.page()), text: m.text(), source: loc.url ? bare(loc.url) : "" };
    if (m.type() === "error") events.consoleErrors.push(entry);
    else if (m.type() === "warning") events.consoleWarnings.push(entry);
  });
  context.on("weberror", (e) => events.pageErrors.push({ ...tag(), page: pageURL(e.page()), text: String(e.error()) }));
  context.on("requestfailed", (r) => {
    events.failedRequests.push({ ...tag(), method: r.method(), url: bare(r.url()), error: r.failure()?.errorText ?? "" });
  });
  context.on("response", (r) => {
    const req = r.request();
    if (["fetch", "xhr"].includes(req.resourceType())) {
      events.fetches.push({ ...tag(), method: req.method(), url: bare(r.url()), status: r.status() });
    }
    if (r.status() >= 400) {
      events.httpErrors.push({ ...tag(), method: req.method(), url: bare(r.url()), status: r.status() });
    }
  });
}

// screenshotter returns shoot(page, name), which saves a full-page PNG as
// dir/name.png and lists it in list.
export async function screenshotter(dir, list) {
  await mkdir(dir, { recursive: true });
  return async (page, name) => {
    const file = path.join(dir, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    list.push(file);
  };
}

// withDeadline runs flow(), rejecting when it has not finished after ms.
export async function withDeadline(ms, flow) {
  let timer;
  try {
    return await Promise.race([
      flow(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

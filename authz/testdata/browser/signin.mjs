// signin.mjs drives headless Chromium (Debian's, never a downloaded one)
// through a sign-in: the SPA at --url, our login page, our consent page,
// and back to the SPA's callback, which shows the user's sub. It prints one
// line of JSON on stdout for authz/browser_test.go and saves a screenshot
// of each step in --screenshots. It exits 1 when the flow did not finish;
// the JSON then says where it stopped.
//
//   node signin.mjs --url http://127.0.0.1:1234/ --username alice \
//     --password secret --screenshots /tmp/shots [--chromium /usr/bin/chromium]
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    screenshots: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "45000" },
  },
});
for (const name of ["url", "username", "password", "screenshots"]) {
  if (!opt[name]) {
    console.error(`signin.mjs: --${name} is required`);
    process.exit(2);
  }
}

const result = {
  sub: "",
  username: "",
  step: "start",          // the last step begun; where it stopped on failure
  error: "",
  consoleErrors: [],      // console messages of type error, with their page
  consoleWarnings: [],
  cspViolations: [],      // securitypolicyviolation events on any page
  pageErrors: [],         // uncaught exceptions
  httpErrors: [],         // responses with status >= 400
  failedRequests: [],     // network failures, CORS refusals included
  fetches: [],            // fetch/XHR calls the pages made: method, URL, status
  screenshots: [],
};

// errorText is an error's message without Playwright's terminal colours.
const errorText = (err) => String(err && err.message ? err.message : err).replace(/\x1b\[[0-9;]*m/g, "");

// Query strings carry codes and state: report URLs without them.
const bare = (u) => {
  try {
    const x = new URL(u);
    return x.origin + x.pathname;
  } catch {
    return u;
  }
};

await mkdir(opt.screenshots, { recursive: true });
let shot = 0;
async function screenshot(page, name) {
  const file = path.join(opt.screenshots, `${String(++shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

const deadline = Number(opt["timeout-ms"]);
let browser;
let exitCode = 1;
try {
  browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    timeout: 30000,
    // Without the networking flags Chromium calls home at start-up, which
    // this machine's closed network refuses. launch() gives each run a fresh
    // temporary profile.
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
  const context = await browser.newContext({ viewport: { width: 900, height: 720 } });
  await context.exposeBinding("__authzReportCSP", ({ page }, v) => {
    result.cspViolations.push({ page: bare(page.url()), ...v });
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
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => {
    const loc = m.location();
    const entry = { page: bare(page.url()), text: m.text(), source: loc.url ? bare(loc.url) : "" };
    if (m.type() === "error") result.consoleErrors.push(entry);
    else if (m.type() === "warning") result.consoleWarnings.push(entry);
  });
  page.on("pageerror", (e) => result.pageErrors.push({ page: bare(page.url()), text: String(e) }));
  page.on("requestfailed", (r) => {
    result.failedRequests.push({ method: r.method(), url: bare(r.url()), error: r.failure()?.errorText ?? "" });
  });
  page.on("response", (r) => {
    const req = r.request();
    if (["fetch", "xhr"].includes(req.resourceType())) {
      result.fetches.push({ method: req.method(), url: bare(r.url()), status: r.status() });
    }
    if (r.status() >= 400) {
      result.httpErrors.push({ method: req.method(), url: bare(r.url()), status: r.status() });
    }
  });

  const flow = async () => {
    result.step = "open the SPA";
    await page.goto(opt.url);
    await page.locator("body[data-state]").waitFor();
    await screenshot(page, "spa");
    if ((await page.locator("body").getAttribute("data-state")) !== "ready") {
      throw new Error(`SPA not ready: ${await page.locator("#error").textContent()}`);
    }

    result.step = "sign in on the login page";
    await page.locator("#signin").click();
    await page.locator('#username, body[data-state="error"]').first().waitFor();
    if ((await page.locator("body").getAttribute("data-state")) === "error") {
      throw new Error(`SPA failed to start the sign-in: ${await page.locator("#error").textContent()}`);
    }
    await page.locator("#username").fill(opt.username);
    await page.locator("#password").fill(opt.password);
    await screenshot(page, "login");
    await page.locator('button[name="action"][value="login"]').click();

    result.step = "allow on the consent page";
    await page.locator('button[name="action"][value="allow"]').waitFor();
    await screenshot(page, "consent");
    await page.locator('button[name="action"][value="allow"]').click();

    result.step = "callback";
    await page.waitForURL((u) => u.pathname === "/callback");
    await page.locator("body[data-state]").waitFor();
    await screenshot(page, "callback");
    if ((await page.locator("body").getAttribute("data-state")) !== "signed-in") {
      throw new Error(`callback failed: ${await page.locator("#error").textContent()}`);
    }
    result.sub = (await page.locator("#sub").textContent()) ?? "";
    result.username = (await page.locator("#username").textContent()) ?? "";
    result.step = "done";
  };
  let timer;
  try {
    await Promise.race([
      flow(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${deadline} ms`)), deadline);
      }),
    ]);
    exitCode = 0;
  } catch (err) {
    result.error = errorText(err);
    await screenshot(page, "failure").catch(() => {});
  } finally {
    clearTimeout(timer);
  }
} catch (err) {
  result.error = errorText(err);
} finally {
  await browser?.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exitCode = exitCode;

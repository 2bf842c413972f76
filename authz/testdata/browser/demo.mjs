// demo.mjs drives headless Chromium (Debian's, never a downloaded one)
// through the demo: the BFF (internal/demo/bff), authz's login and consent
// pages and the contacts the BFF fetches from the API (internal/demo/api). It
// is run by internal/demo/e2e/browser_test.go, which asserts on what it
// prints: one line of JSON on stdout. It saves a screenshot of each step in
// the screenshots directory and exits 1 when a scenario did not finish; the
// JSON then says where it stopped.
//
// It reads its configuration as JSON on stdin, so that no password shows
// in ps:
//
//   {"bff": "http://127.0.0.1:3000/", "issuer": "http://localhost:8080",
//    "allow": {"username": "alice", "password": "…"},
//    "deny": {"username": "bob", "password": "…"},
//    "screenshots": "/tmp/shots", "chromium": "/usr/bin/chromium",
//    "timeoutMs": 60000}
//
// The scenarios:
//
//   allow:  open the BFF, click "Get contacts", sign in, allow, and see
//           the contacts (screenshots 01-bff-home to 04-contacts);
//   deny:   in a fresh browser, the same with the "deny" user, who denies
//           on the consent page; the BFF shows its error (05-denied);
//   logout: in the allow scenario's browser, "Sign out" (through authz's
//           confirmation page, if it asks) back to the BFF (06-signed-out),
//           then "Get contacts" again, which must ask for the password
//           (07-login-again).
import { readFileSync } from "node:fs";
import { bare, errorText, instrument, launch, newEvents, screenshotter, withDeadline } from "./harness.mjs";

let cfg;
try {
  cfg = JSON.parse(readFileSync(0, "utf8"));
} catch (err) {
  console.error(`demo.mjs: the configuration on stdin is not JSON: ${errorText(err)}`);
  process.exit(2);
}
for (const name of ["bff", "issuer", "allow", "deny", "screenshots"]) {
  if (!cfg[name]) {
    console.error(`demo.mjs: "${name}" is missing from the configuration`);
    process.exit(2);
  }
}
const issuer = new URL(cfg.issuer).origin;

// Each event and navigation is tagged with the scenario it happened in.
let scenario = "start";
const result = {
  step: "start",      // the last step begun; where it stopped on failure
  error: "",
  // Where the browser was sent on opening cfg.bff: the BFF keeps browsers
  // on its redirect URI's host.
  bffOrigin: "",
  allow: null,
  deny: null,
  logout: null,
  navigations: [],    // the documents loaded: scenario, method, URL, status
  ...newEvents(),
  screenshots: [],
};
const tag = () => ({ scenario });

// view describes the page the browser shows: which of the known pages it
// is (by the elements on it) and what it says.
async function view(page) {
  const u = new URL(page.url());
  const text = async (sel) => {
    const l = page.locator(sel);
    return (await l.count()) ? ((await l.first().textContent()) ?? "").replace(/\s+/g, " ").trim() : null;
  };
  const v = {
    origin: u.origin,
    path: u.pathname,
    title: await page.title(),
    heading: await text("h1"),
    isLogin: (await page.locator("#username").count()) > 0 && (await page.locator("#password").count()) > 0,
    isConsent: (await page.locator('button[name="action"][value="allow"]').count()) > 0,
    isLogoutConfirm: (await page.locator('button[name="action"][value="logout"]').count()) > 0,
    who: await text("#who"),
    notice: await text("#notice"),
    error: await text("#error"),
    hasGetContacts: (await page.locator("#get-contacts").count()) > 0,
    hasSignIn: (await page.locator("#sign-in").count()) > 0,
    hasSignOut: (await page.locator("#sign-out").count()) > 0,
    caption: await text("#contacts caption"),
    contacts: null,
  };
  if (await page.locator("#contacts").count()) {
    v.contacts = await page.locator("#contacts tbody tr").evaluateAll((rows) =>
      rows.map((tr) => {
        const [name, email, phone] = [...tr.cells].map((td) => td.textContent.trim());
        return { name, email, phone };
      }),
    );
  }
  return v;
}

// One of these is on every page the flows wait for.
const landmarks = [
  "#username",
  'button[name="action"][value="allow"]',
  'button[name="action"][value="logout"]',
  "#get-contacts",
  "#error",
  "h1",
].join(", ");

// settle waits until the page shows one of the landmarks.
async function settle(page) {
  await page.waitForLoadState("load");
  await page.locator(landmarks).first().waitFor();
}

// click clicks sel and waits for the document it leads to, after any
// redirects.
async function click(page, sel) {
  const committed = page.waitForEvent("framenavigated", { predicate: (f) => f === page.mainFrame() });
  await page.locator(sel).click();
  await committed;
  await settle(page);
}

async function signIn(page, user) {
  await page.locator("#username").fill(user.username);
  await page.locator("#password").fill(user.password);
}

const mustBe = (v, what, ok) => {
  if (!ok) throw new Error(`expected ${what}, got ${JSON.stringify(v)}`);
};

const shoot = await screenshotter(cfg.screenshots, result.screenshots);
// shootPhone saves name-390.png too, at a phone's width (390px).
const shootPhone = async (page, name) => {
  const size = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  await shoot(page, `${name}-390`);
  await page.setViewportSize(size);
};
let browser;
let exitCode = 1;
try {
  browser = await launch(cfg.chromium || "/usr/bin/chromium");
  const newPage = async () => {
    const context = await browser.newContext({ viewport: { width: 1024, height: 720 } });
    await instrument(context, result, tag);
    context.on("response", (r) => {
      const req = r.request();
      if (req.isNavigationRequest() && req.frame().parentFrame() === null) {
        result.navigations.push({ scenario, method: req.method(), url: bare(r.url()), status: r.status() });
      }
    });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    return page;
  };
  let page; // the page of the current scenario, for the failure screenshot

  const flow = async () => {
    scenario = "allow";
    const a = (result.allow = {});
    page = await newPage();
    const first = page;

    result.step = "allow: open the BFF";
    await page.goto(cfg.bff);
    await settle(page);
    result.bffOrigin = new URL(page.url()).origin;
    a.home = await view(page);
    await shoot(page, "01-bff-home");
    await shootPhone(page, "01-bff-home");
    mustBe(a.home, "the BFF's home page with Get contacts", a.home.hasGetContacts);

    result.step = "allow: Get contacts";
    await click(page, "#get-contacts");
    a.login = await view(page);
    mustBe(a.login, "authz's login page", a.login.isLogin && a.login.origin === issuer);
    await signIn(page, cfg.allow);
    await shoot(page, "02-login");

    result.step = "allow: sign in";
    await click(page, 'button[name="action"][value="login"]');
    a.consent = await view(page);
    mustBe(a.consent, "authz's consent page", a.consent.isConsent);
    await shoot(page, "03-consent");

    result.step = "allow: Allow";
    await click(page, 'button[name="action"][value="allow"]');
    a.contacts = await view(page);
    await shoot(page, "04-contacts");
    await shootPhone(page, "04-contacts");
    mustBe(a.contacts, "the BFF's page", a.contacts.origin === result.bffOrigin);

    scenario = "deny";
    const d = (result.deny = {});
    page = await newPage();

    result.step = "deny: open the BFF";
    await page.goto(cfg.bff);
    await settle(page);

    result.step = "deny: Get contacts";
    await click(page, "#get-contacts");
    d.login = await view(page);
    mustBe(d.login, "authz's login page", d.login.isLogin && d.login.origin === issuer);
    await signIn(page, cfg.deny);

    result.step = "deny: sign in";
    await click(page, 'button[name="action"][value="login"]');
    d.consent = await view(page);
    mustBe(d.consent, "authz's consent page", d.consent.isConsent);

    result.step = "deny: Deny";
    await click(page, 'button[name="action"][value="deny"]');
    d.denied = await view(page);
    await shoot(page, "05-denied");
    await shootPhone(page, "05-denied");
    await page.context().close();

    scenario = "logout";
    const l = (result.logout = {});
    page = first;

    result.step = "logout: Sign out";
    await click(page, "#sign-out");
    l.confirm = null;
    const v = await view(page);
    if (v.isLogoutConfirm) {
      l.confirm = v;
      await shoot(page, "06a-logout-confirm");
      result.step = "logout: confirm on authz's page";
      await click(page, 'button[name="action"][value="logout"]');
    }
    l.signedOut = await view(page);
    await shoot(page, "06-signed-out");
    await shootPhone(page, "06-signed-out");

    result.step = "logout: Get contacts again";
    await click(page, "#get-contacts");
    l.again = await view(page);
    await shoot(page, "07-login-again");

    result.step = "done";
  };
  try {
    await withDeadline(Number(cfg.timeoutMs || 60000), flow);
    exitCode = 0;
  } catch (err) {
    result.error = errorText(err);
    if (page) await shoot(page, `failure-${scenario}`).catch(() => {});
  }
} catch (err) {
  result.error = errorText(err);
} finally {
  await browser?.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exitCode = exitCode;

// Open a loadgen HTML report in headless Chromium (Debian's, driven by playwright-core) from a
// file:// URL with the network blocked, collect console errors and page errors, count the SVG
// plots, and save a full-page screenshot.
// Usage: node report_page.js REPORT.html SCREENSHOT.png → prints {"errors":[...],"svgs":N,"title":"..."}
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

(async () => {
  const [report, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    // The report must be self-contained: any request beyond the file itself is an error.
    await page.route('**/*', (route) => {
      if (route.request().url().startsWith('file://')) return route.continue();
      errors.push('network request: ' + route.request().url());
      return route.abort();
    });
    await page.goto('file://' + require('path').resolve(report), { waitUntil: 'load' });
    const svgs = await page.locator('svg').count();
    const title = await page.title();
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ errors, svgs, title }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });

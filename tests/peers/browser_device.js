// A device in a real browser: headless Chromium (Debian's), driven by playwright-core, opens
// `new WebSocket(url, 'oneM2M.json')` and registers an AE through the edge.
// Usage: node browser_device.js WS_URL AE_ID  → prints the registration and deregistration rsc.
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

(async () => {
  const [url, ae] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const result = await page.evaluate(async ({ url, ae }) => {
      const ws = new WebSocket(url, 'oneM2M.json');
      const next = () => new Promise((resolve, reject) => {
        ws.onmessage = (e) => resolve(JSON.parse(e.data));
        ws.onerror = () => reject(new Error('websocket error'));
        ws.onclose = (e) => reject(new Error('closed ' + e.code));
      });
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('open failed')); });
      const protocol = ws.protocol;
      ws.send(JSON.stringify({ op: 1, to: 'cse-in', fr: ae, rqi: 'b1', rvi: '3', ty: 2,
        pc: { 'm2m:ae': { rn: ae, api: 'Nbrowser', rr: true, srv: ['3'] } } }));
      const reg = await next();
      ws.send(JSON.stringify({ op: 4, to: 'cse-in/' + ae, fr: ae, rqi: 'b2', rvi: '3' }));
      const del = await next();
      ws.close(1000);
      return { protocol, reg: reg.rsc, del: del.rsc };
    }, { url, ae });
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });

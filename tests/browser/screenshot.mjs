// Load the running app in headless Chromium, upload a radiograph, wait for
// the overlay, and save a screenshot.  Usage: node screenshot.mjs URL OUT.png [IMAGE]
import { chromium } from "playwright-core";

const [url, out, image, view, button] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.getByText("cxr-dash", { exact: false }).first().waitFor({ timeout: 120000 });
  if (image) {
    await page.locator("input[type=file]").first().setInputFiles(image, { timeout: 300000 });
    // The overview image and its legend appear once the five models have run.
    await page.getByText("Left clavicle").first().waitFor({ timeout: 240000 });
    await page.locator("[data-testid=stImage] img").first().waitFor({ timeout: 240000 });
    await page.waitForTimeout(1500);
  }
  if (view) {  // optional: another view, chosen in the sidebar
    await page.getByText(view, { exact: true }).first().click();
    await page.waitForTimeout(8000);
  }
  if (button) {  // optional: press a button of that view (e.g. "Run explanation")
    await page.getByRole("button", { name: button }).first().click();
    await page.waitForTimeout(15000);
  }
  await page.screenshot({ path: out, fullPage: false });
  const text = await page.locator("body").innerText();
  console.log(JSON.stringify({ ok: true, hasNotice: /research use only/i.test(text),
                               hasError: /Traceback/.test(text) }));
} finally {
  await browser.close();
}

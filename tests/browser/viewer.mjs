// The viewer in headless Chromium: upload a radiograph and a reference mask, then
// screenshot the overlay (fill, outline), the statistics with the CTR lines, the
// difference view, an explanation chosen by clicking a lung, and training playback
// while it plays. Every console error and every failed request is reported.
// Usage: node viewer.mjs URL OUT_DIR IMAGE.png REFERENCE.png
// Prints one JSON line: {shots, consoleErrors, failedRequests, hasNotice, hasTraceback}.
import { chromium } from "playwright-core";

const [url, outDir, image, reference] = process.argv.slice(2);
const consoleErrors = [], failedRequests = [], shots = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const step = (name) => console.error(`[viewer] ${name}`);
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${m.text()} @ ${m.location().url || ""}`); });
  page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.url()}`); });
  page.on("requestfailed", (r) => {
    const why = r.failure()?.errorText || "";
    if (!/ERR_ABORTED/.test(why)) failedRequests.push(`failed ${r.url()} ${why}`);  // aborted: superseded media
  });

  // Streamlit reruns on every widget change; "running" is its status widget.
  const settle = async (ms = 1500) => {
    await page.waitForTimeout(500);
    await page.locator("[data-testid=stStatusWidget]").waitFor({ state: "detached", timeout: 300000 })
      .catch(() => {});
    await page.waitForTimeout(ms);
  };
  const shot = async (name) => {
    const path = `${outDir}/${name}.png`;
    await page.screenshot({ path, fullPage: false });
    shots.push(path);
  };
  const view = async (name) => {
    await page.locator("section[data-testid=stSidebar]").getByText(name, { exact: true }).first().click();
    await settle(3000);
  };

  step("open");
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.getByText("cxr-dash", { exact: false }).first().waitFor({ timeout: 180000 });
  step("upload");
  await page.locator("input[type=file]").first().setInputFiles(image, { timeout: 300000 });
  await page.locator("[data-testid=stImage] img").first().waitFor({ timeout: 300000 });
  await page.getByText("Left clavicle").first().waitFor({ timeout: 300000 });
  await settle(3000);
  step("reference");
  await page.locator("input[type=file]").nth(1).setInputFiles(reference, { timeout: 300000 });
  await page.getByText("Reference: heart", { exact: false }).first().waitFor({ timeout: 300000 });
  await settle(3000);
  await shot("overlay_fill");

  step("outline");
  await page.locator("section[data-testid=stSidebar]").getByText("outline", { exact: true }).first().click();
  await settle(3000);
  await shot("overlay_outline");

  step("inspect: window from a box drawn on the image");
  await page.getByText("Inspect: zoom, pan, window and read values").first().click();
  await settle(3000);
  const inspect = page.locator("[data-testid=stPlotlyChart]").first();
  await inspect.waitFor({ timeout: 120000 });
  await inspect.hover();
  await inspect.locator(".modebar-btn[data-title='Box Select']").first().click();
  const area = await inspect.locator(".nsewdrag").first().boundingBox();
  // Over the right lung (the image's left): a dark area, windowed to full contrast.
  await page.mouse.move(area.x + area.width * 0.22, area.y + area.height * 0.35);
  await page.mouse.down();
  await page.mouse.move(area.x + area.width * 0.38, area.y + area.height * 0.6, { steps: 8 });
  await page.mouse.up();
  await page.getByText("Window: level", { exact: false }).first().waitFor({ timeout: 60000 });
  await settle(3000);
  const windowed = await page.getByText("Window: level", { exact: false }).first().innerText();
  if (/level 0\.50, width 1\.00/.test(windowed)) throw new Error(`the window did not change: ${windowed}`);
  await shot("inspect_windowed");
  await page.getByRole("button", { name: "Reset window" }).click();
  await settle(2000);
  await page.getByText("Inspect: zoom, pan, window and read values").first().click();
  await settle(2000);

  step("statistics");
  await view("Statistics");
  await page.getByText("Cardiothoracic ratio").first().waitFor({ timeout: 120000 });
  await settle(2000);
  await shot("statistics");

  step("difference");
  await view("Compare regions");
  await page.getByText("difference view (agreement, missed, extra)").first().click();
  await settle(3000);
  await page.getByText("zoomed to the region").first().waitFor({ timeout: 120000 });
  await shot("difference");

  step("explain: click the left lung");
  await view("Explain");
  const picker = page.locator("[data-testid=stPlotlyChart]").first();
  await picker.waitFor({ timeout: 120000 });
  await page.waitForTimeout(2000);
  // Inside the left lung (the image's right), in the figure's coordinates (pixels of the
  // image as worked on); the heart, first of the regions, is the default target.
  const [px, py] = await page.evaluate(() => {
    const gd = document.querySelector("[data-testid=stPlotlyChart] .js-plotly-plot");
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    const box = gd.querySelector(".nsewdrag").getBoundingClientRect();
    const [w, h] = [xa.range[1], ya.range[0]];
    return [box.left + xa.l2p(0.70 * w), box.top + ya.l2p(0.45 * h)];
  });
  await page.mouse.move(px - 8, py - 8);
  await page.mouse.move(px, py, { steps: 6 });
  await page.waitForTimeout(600);
  await page.mouse.down();
  await page.mouse.up();
  await page.locator("[data-testid=stMultiSelect]").getByText("Left lung").first()
    .waitFor({ timeout: 120000 });
  const faithfulness = page.getByText("Faithfulness", { exact: false }).first();
  await faithfulness.waitFor({ timeout: 240000 });
  await settle(3000);
  await faithfulness.scrollIntoViewIfNeeded();      // the heatmap and its deletion test
  await page.waitForTimeout(1000);
  await shot("explain_clicked_left_lung");

  step("playback");
  await view("Training playback");
  await page.getByText("Play", { exact: true }).first().click();
  await page.waitForTimeout(8000);
  await shot("playback_playing");
  await page.getByText("Play", { exact: true }).first().click();
  await settle(2000);

  const text = await page.locator("body").innerText();
  console.log(JSON.stringify({ shots, consoleErrors, failedRequests,
                               hasNotice: /research use only/i.test(text),
                               hasTraceback: /Traceback/.test(text) }));
} catch (e) {
  console.log(JSON.stringify({ shots, consoleErrors, failedRequests, error: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}

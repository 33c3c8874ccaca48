// goodjob dashboard: confirmations, the overview's charts and their refresh. No inline script
// runs on these pages (their Content-Security-Policy forbids it); this file is all there is.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

const REFRESH_MS = 5000;

function seriesData(chart) {
  const xs = chart.minutes.map((m) => Date.parse(m) / 1000);
  return xs;
}

function drawCharts(chart) {
  const xs = seriesData(chart);
  const width = (id) => Math.max(300, document.getElementById(id).clientWidth - 8);
  const throughput = [xs, chart.enqueued.values, chart.finished.values, chart.discarded.values];
  const latency = [xs, chart.latency_avg.values, chart.latency_max.values];
  const axes = [{}, { size: 60 }];
  const made = {
    throughput: new uPlot({
      width: width("chart-throughput"), height: 220, axes,
      series: [{}, { label: "enqueued", stroke: "#2f5bd3" }, { label: "finished", stroke: "#1f8a4c" },
               { label: "discarded", stroke: "#c0392b" }],
    }, throughput, document.getElementById("chart-throughput")),
    latency: new uPlot({
      width: width("chart-latency"), height: 220, axes,
      series: [{}, { label: "average wait (s)", stroke: "#b7791f" }, { label: "longest wait (s)", stroke: "#6b46c1" }],
    }, latency, document.getElementById("chart-latency")),
  };
  return (next) => {
    const x = seriesData(next);
    made.throughput.setData([x, next.enqueued.values, next.finished.values, next.discarded.values]);
    made.latency.setData([x, next.latency_avg.values, next.latency_max.values]);
  };
}

function startOverview() {
  const source = document.getElementById("chart-source");
  if (!source || typeof uPlot === "undefined") return;
  const update = drawCharts(JSON.parse(source.dataset.chart));
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(source.dataset.url, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      update(data.chart);
      for (const [state, count] of Object.entries(data.counts)) {
        const cell = document.querySelector(`[data-count="${state}"]`);
        if (cell) { cell.textContent = count.label; cell.title = count.kind; }
      }
    } catch (error) {
      // The next tick tries again.
    }
  }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", startOverview);

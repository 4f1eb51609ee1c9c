"""The report page (Jinja2, autoescaped). Inline CSS and script only: the page loads nothing."""

HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
         max-width: 1200px; padding: 0 16px; color: #1d1d1f; }
  h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 17px; margin-top: 28px; }
  .muted { color: #6e6e73; font-size: 12px; }
  table { border-collapse: collapse; margin: 8px 0; }
  th, td { border-bottom: 1px solid #e3e3e6; padding: 4px 10px; text-align: left; vertical-align: top; }
  th { background: #f5f5f7; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.best { background: #dff3e4; font-weight: 700; }
  code { font-size: 12px; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
  .status-completed { color: #1a7f37; } .status-failed, .status-diverged { color: #c62828; }
  .scroll { overflow-x: auto; }
  .charts { display: flex; flex-wrap: wrap; gap: 16px; }
  figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 2px; }
  svg.chart { width: 560px; max-width: 100%; height: auto; border: 1px solid #e3e3e6; }
  svg .grid { stroke: #ececef; } svg .axis { stroke: #8e8e93; }
  svg .tick { font-size: 11px; fill: #6e6e73; }
  svg .series path { fill: none; stroke: currentColor; stroke-width: 2; }
  svg .series circle { fill: currentColor; }
  svg .series.dim { opacity: 0.12; } svg .series.hidden { display: none; }
  .legend span { cursor: pointer; margin-right: 14px; user-select: none; }
  .legend span.off { opacity: 0.35; text-decoration: line-through; }
  .warning { background: #fff4ce; border: 1px solid #e0c060; padding: 8px 12px; border-radius: 4px; }
  td.cfg { max-width: 22em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  img.grid { width: 200px; image-rendering: pixelated; border: 1px solid #e3e3e6; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<div class="muted">Generated {{ generated }} by dgm-compare from the run folders below.</div>
{% if warning %}<p class="warning" id="warning"><strong>Warning:</strong> {{ warning }}</p>{% endif %}

<h2>Runs</h2>
<div class="scroll"><table id="runs">
<tr><th>run</th><th>status</th><th>seed</th><th>wall time (s)</th><th>steps</th><th>dataset</th><th>rank</th><th>best checkpoint</th><th>folder</th></tr>
{% for run in runs %}
<tr data-run="{{ run.label }}"><td><span class="swatch" style="background:{{ run.color }}"></span>{{ run.label }}</td>
<td class="status-{{ run.status }}" title="{{ run.error }}">{{ run.status }}</td><td class="num">{{ run.seed }}</td>
<td class="num">{{ run.wall_time }}</td><td class="num">{{ run.steps }}</td><td>{{ run.dataset }}</td>
<td class="num">{{ run.rank }}</td><td>{{ run.best }}</td>
<td><code>{{ run.path }}</code></td></tr>
{% endfor %}
</table></div>

<h2>Config differences</h2>
{% if config_rows %}
<div class="scroll"><table id="config">
<tr><th>key</th>{% for run in runs %}<th>{{ run.label }}</th>{% endfor %}</tr>
{% for row in config_rows %}
<tr data-key="{{ row.key }}"><td><code>{{ row.key }}</code></td>{% for cell in row.cells %}<td class="cfg" title="{{ cell.full }}">{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}
</table></div>
{% else %}
<p>No config key differs between the runs.</p>
{% endif %}
<div class="muted">Paths, Hydra's settings, W&amp;B run ids and values naming a run's own folder are left out.</div>

{% for section in sections %}
<section class="dataset" data-dataset="{{ section.dataset }}">
<h2>Final metrics{% if sections | length > 1 %}: {{ section.dataset }}{% endif %}</h2>
<div class="scroll"><table class="metrics"{% if loop.first %} id="metrics"{% endif %}>
<tr><th>metric</th>{% for label in section.labels %}<th>{{ label }}</th>{% endfor %}</tr>
{% for row in section.metric_rows %}
<tr data-metric="{{ row.name }}"><td>{{ row.name }} {{ row.arrow }}</td>
{% for cell in row.cells %}<td class="num{% if cell.best %} best{% endif %}">{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}
</table></div>
<div class="muted">From each run's summary.json. Best per metric highlighted: ↑ higher is better, ↓ lower is better
(the metric table's direction; losses and counters are never highlighted).{% if section.ranked_by %} Runs ranked by {{ section.ranked_by }}, the metric that picked their checkpoints.{% endif %}</div>

<h2>Learning curves{% if sections | length > 1 %}: {{ section.dataset }}{% endif %}</h2>
<div class="legend">{% for run in runs %}{% if run.label in section.labels %}<span data-run="{{ run.label }}"><span class="swatch" style="background:{{ run.color }}"></span>{{ run.label }}</span>{% endif %}{% endfor %}
<span class="muted">click a run to hide it; hover to pick it out</span></div>
<div class="charts">
{% for chart in section.charts %}
<figure><figcaption>{{ chart.metric }}</figcaption>
{% if chart.svg %}{{ chart.svg }}{% else %}<p class="muted">No run logged {{ chart.metric }}.</p>{% endif %}
{% if chart.missing and chart.svg %}<div class="muted">Not logged by: {{ chart.missing | join(", ") }}</div>{% endif %}
</figure>
{% endfor %}
</div>
</section>
{% endfor %}

<h2>Latest sample grids</h2>
{% if kinds %}
<div class="scroll"><table id="samples">
<tr><th>run</th>{% for kind in kinds %}<th>{{ kind }}</th>{% endfor %}</tr>
{% for row in samples %}
<tr data-run="{{ row.label }}"><td><span class="swatch" style="background:{{ row.color }}"></span>{{ row.label }}</td>
{% for cell in row.cells %}<td>{% if cell %}<img class="grid" src="{{ cell.uri }}" alt="{{ cell.name }}" title="{{ cell.name }}" data-run="{{ row.label }}">{% else %}—{% endif %}</td>{% endfor %}</tr>
{% endfor %}
</table></div>
{% else %}
<p>No run has sample grids.</p>
{% endif %}

<script>
// Legend: click hides a run's curves; hovering a legend entry or run row dims the other runs.
(function () {
  const series = Array.from(document.querySelectorAll("svg .series"));
  const setDim = (run) => series.forEach((g) => g.classList.toggle("dim", run !== null && g.dataset.run !== run));
  document.querySelectorAll(".legend span[data-run], #runs tr[data-run]").forEach((el) => {
    el.addEventListener("mouseenter", () => setDim(el.dataset.run));
    el.addEventListener("mouseleave", () => setDim(null));
  });
  document.querySelectorAll(".legend span[data-run]").forEach((el) => {
    el.addEventListener("click", () => {
      const off = el.classList.toggle("off");
      series.filter((g) => g.dataset.run === el.dataset.run).forEach((g) => g.classList.toggle("hidden", off));
    });
  });
})();
</script>
</body>
</html>
"""

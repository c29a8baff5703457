// A grouped bar chart as a standalone SVG, so reports need no plotting library.

export interface Series {
  name: string;
  values: (number | null)[];
}

export interface BarChart {
  title: string;
  /** One group of bars per label along the x axis. */
  groups: string[];
  series: Series[];
  unit: string;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#7f7f7f'];
const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(max: number): number {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  return Math.ceil(max / step) * step;
}

function label(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function barChart(chart: BarChart): string {
  const width = 760;
  const height = 360;
  const left = 70;
  const right = 150;
  const top = 40;
  const bottom = 50;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...chart.series.flatMap((s) => s.values.filter((v): v is number => v !== null))));
  const groupW = plotW / chart.groups.length;
  const barW = (groupW * 0.8) / chart.series.length;
  const y = (v: number): number => top + plotH - (v / max) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escape(chart.title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${label(v)}</text>`);
  }
  parts.push(`<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">${escape(chart.unit)}</text>`);
  chart.groups.forEach((group, g) => {
    parts.push(`<text x="${left + groupW * (g + 0.5)}" y="${top + plotH + 20}" text-anchor="middle">${escape(group)}</text>`);
    chart.series.forEach((series, s) => {
      const v = series.values[g];
      if (v === null || v === undefined) return;
      const x = left + groupW * g + groupW * 0.1 + barW * s;
      parts.push(`<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - y(v)).toFixed(1)}" fill="${COLORS[s % COLORS.length]}"><title>${escape(`${series.name}, ${group}: ${label(v)} ${chart.unit}`)}</title></rect>`);
    });
  });
  chart.series.forEach((series, s) => {
    const ly = top + 10 + s * 20;
    parts.push(`<rect x="${left + plotW + 20}" y="${ly - 10}" width="12" height="12" fill="${COLORS[s % COLORS.length]}"/>`);
    parts.push(`<text x="${left + plotW + 38}" y="${ly}">${escape(series.name)}</text>`);
  });
  parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="black"/>`, '</svg>');
  return parts.join('\n') + '\n';
}

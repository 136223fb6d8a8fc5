// The package as a user's server gets it: `npm pack` the main package and this platform's
// binary package (holding the `.node` this machine built), install both tarballs into an empty
// project, and use it there as users write it: the example server (CommonJS) and a .mjs script
// (ESM) in local mode, and TypeScript under moduleResolution node16 and bundler. On Linux x64 the
// installed binary must load on glibc 2.28 (objdump -T).
import { execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { freshDatabase, tempDir } from './support/pushq-bin'

const root = path.resolve(__dirname, '..')
const run = (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) =>
  execFileSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

/** The `.node` the build wrote at the root, and its platform (`linux-x64-gnu`, ...). */
function builtBinary(): { file: string; platform: string } {
  const nodes = fs.readdirSync(root).filter((f) => /^pushq\..+\.node$/.test(f))
  expect(nodes).toHaveLength(1)
  return { file: path.join(root, nodes[0]), platform: nodes[0].slice('pushq.'.length, -'.node'.length) }
}

/** The highest `GLIBC_x.y` version a shared object needs. */
function glibcFloor(file: string): string {
  const versions = run('objdump', ['-T', file], root).match(/GLIBC_[0-9.]+/g) ?? []
  const parse = (v: string) => v.slice('GLIBC_'.length).split('.').map(Number)
  const cmp = (a: number[], b: number[]) => (a[0] - b[0]) || ((a[1] ?? 0) - (b[1] ?? 0)) || ((a[2] ?? 0) - (b[2] ?? 0))
  return versions.map(parse).sort(cmp).pop()!.join('.')
}

// Packed and installed once; each test below uses the installed package as a user's project would.
let app: string
let installed: string
let packed: { main: any; binary: any; platform: string; file: string }

beforeAll(() => {
  const { file, platform } = builtBinary()
  const work = tempDir()

  // The platform package: npm/<platform>/package.json plus the binary.
  const staging = path.join(work, platform)
  fs.mkdirSync(staging)
  for (const f of ['package.json', 'README.md']) fs.copyFileSync(path.join(root, 'npm', platform, f), path.join(staging, f))
  fs.copyFileSync(file, path.join(staging, path.basename(file)))
  const packs = path.join(work, 'packs')
  fs.mkdirSync(packs)
  const pack = (dir: string) => JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packs], dir))[0]
  packed = { main: pack(root), binary: pack(staging), platform, file }

  // An empty project installs both tarballs, from disk only.
  app = path.join(work, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'user-server', version: '1.0.0', private: true }))
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(packs, packed.main.filename), path.join(packs, packed.binary.filename)], app)
  installed = path.join(app, 'node_modules', `pushq-${platform}`, path.basename(file))
})

/** Runs a script of the user's project with node, in local mode on a fresh SQLite database. */
const runLocal = (script: string) =>
  run(process.execPath, [script], app, {
    DATABASE_URL: freshDatabase('sqlite'),
    PUSHQ_FCM_CREDENTIALS: '',
    GOOGLE_APPLICATION_CREDENTIALS: '',
    PUSHQ_EXAMPLE_JSON: '1',
    NODE_PATH: '',
  })

test('npm pack: the main package is the loader and types, the platform package its binary', () => {
  const { main, binary, platform, file } = packed
  // The main package carries the loader and types, never a binary; the platform package its binary.
  expect(main.files.map((f: { path: string }) => f.path).sort()).toEqual(['README.md', 'index.d.ts', 'index.js', 'package.json'])
  expect(binary.files.map((f: { path: string }) => f.path).sort()).toEqual(['README.md', 'package.json', path.basename(file)].sort())
  expect(fs.existsSync(installed)).toBe(true)
  if (platform === 'linux-x64-gnu') {
    const floor = glibcFloor(installed).split('.').map(Number)
    expect(floor[0] * 100 + floor[1]).toBeLessThanOrEqual(228)
  }
})

test('CommonJS: the example server, with require(\'pushq\'), enqueues and delivers in local mode', () => {
  // The example server, with `require('pushq')` as a user writes it.
  const example = fs.readFileSync(path.join(root, 'examples', 'local-server.js'), 'utf8')
  const server = example.replace("require('..')", "require('pushq')")
  expect(server).not.toBe(example)
  fs.writeFileSync(path.join(app, 'server.js'), server)
  const stdout = runLocal('server.js')
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({
    'class reminder to ana': ['token-ana-phone sent', 'token-ana-tablet sent'],
    'promo to ben and chris': ['token-ben-iphone sent', 'user:chris no_devices'],
    'closure to a topic': ['topic:gym-berlin sent'],
  })
  // And it was the installed binary that ran, not the repository's.
  const loaded = run(process.execPath, ['-e', "require('pushq'); console.log(Object.keys(require('module')._cache).filter((k) => k.endsWith('.node')).join('\\n'))"], app)
  expect(loaded.trim()).toBe(fs.realpathSync(installed))
})

test("ESM: import { PushClient, enqueuePush } from 'pushq' in a .mjs enqueues and delivers in local mode", () => {
  fs.writeFileSync(
    path.join(app, 'server.mjs'),
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
  const stdout = runLocal('server.mjs')
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ delivered: ['topic:gym-berlin sent'], sameAsRequire: true })
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
  fs.writeFileSync(path.join(app, 'check.mts'), esm)
  fs.writeFileSync(path.join(app, 'check.cts'), cjs)
  fs.writeFileSync(path.join(app, 'check-bundler.ts'), esm)
  const tsc = path.join(root, 'node_modules', '.bin', 'tsc')
  // No skipLibCheck: the installed index.d.ts itself is checked too.
  const common = ['--noEmit', '--strict', '--target', 'es2022']
  const compile = (args: string[]) => {
    const result = spawnSync(tsc, [...common, ...args], { cwd: app, encoding: 'utf8' })
    return { status: result.status, output: result.stdout + result.stderr }
  }
  expect(compile(['--module', 'node16', '--moduleResolution', 'node16', 'check.mts', 'check.cts'])).toEqual({ status: 0, output: '' })
  expect(compile(['--module', 'esnext', '--moduleResolution', 'bundler', 'check-bundler.ts'])).toEqual({ status: 0, output: '' })
})

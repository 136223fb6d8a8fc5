// The package as a user's server gets it: `npm pack` the main package and this platform's
// binary package (holding the `.node` this machine built), install both tarballs into an empty
// project, and run the example server there in local mode. On Linux x64 the installed binary
// must load on glibc 2.28 (objdump -T).
import { execFileSync } from 'child_process'
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

test('npm pack, install into an empty project, enqueuePush there in local mode', () => {
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
  const main = pack(root)
  const binary = pack(staging)
  // The main package carries the loader and types, never a binary; the platform package its binary.
  expect(main.files.map((f: { path: string }) => f.path).sort()).toEqual(['README.md', 'index.d.ts', 'index.js', 'package.json'])
  expect(binary.files.map((f: { path: string }) => f.path).sort()).toEqual(['README.md', 'package.json', path.basename(file)].sort())

  // An empty project installs both tarballs, from disk only.
  const app = path.join(work, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'user-server', version: '1.0.0', private: true }))
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(packs, main.filename), path.join(packs, binary.filename)], app)
  const installed = path.join(app, 'node_modules', `pushq-${platform}`, path.basename(file))
  expect(fs.existsSync(installed)).toBe(true)
  if (platform === 'linux-x64-gnu') {
    const floor = glibcFloor(installed).split('.').map(Number)
    expect(floor[0] * 100 + floor[1]).toBeLessThanOrEqual(228)
  }

  // The example server, with `require('pushq')` as a user writes it.
  const example = fs.readFileSync(path.join(root, 'examples', 'local-server.js'), 'utf8')
  const server = example.replace("require('..')", "require('pushq')")
  expect(server).not.toBe(example)
  fs.writeFileSync(path.join(app, 'server.js'), server)
  const stdout = run(process.execPath, ['server.js'], app, {
    DATABASE_URL: freshDatabase('sqlite'),
    PUSHQ_FCM_CREDENTIALS: '',
    GOOGLE_APPLICATION_CREDENTIALS: '',
    PUSHQ_EXAMPLE_JSON: '1',
    NODE_PATH: '',
  })
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({
    'class reminder to ana': ['token-ana-phone sent', 'token-ana-tablet sent'],
    'promo to ben and chris': ['token-ben-iphone sent', 'user:chris no_devices'],
    'closure to a topic': ['topic:gym-berlin sent'],
  })
  // And it was the installed binary that ran, not the repository's.
  const loaded = run(process.execPath, ['-e', "require('pushq'); console.log(Object.keys(require('module')._cache).filter((k) => k.endsWith('.node')).join('\\n'))"], app)
  expect(loaded.trim()).toBe(fs.realpathSync(installed))
})

// The README's "From a clone" install, as written, in a fresh project: the clone here is this
// checkout, already built by the test command (`npm run build` wrote pushq.<platform>.node at its
// root). And what the README warns of: the main package packed alone has no binary.
import { execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { tempDir } from './support/pushq-bin'

const root = path.resolve(__dirname, '..')
const quiet = ['--offline', '--no-audit', '--no-fund', '--loglevel=error']

/** The project-side command of the README's "From a clone" block, with the clone's path. */
function readmeInstallCommand(): string[] {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('\n### From a clone\n'))
  const block = section.match(/```sh\n([\s\S]*?)```\n/)
  expect(block).not.toBeNull()
  const install = block![1].split('\n').find((l) => l.startsWith('npm install '))
  expect(install).toBeDefined()
  return install!.replace('/path/to/pushq', root).split(' ')
}

function freshProject(): string {
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'my-server', version: '1.0.0', private: true }))
  return dir
}

const loads = "const p = require('pushq'); console.log(typeof p.enqueuePush, typeof p.DeliveryLog, typeof p.isPushqError)"

test('the README install from a clone works as written in a fresh project', () => {
  const project = freshProject()
  const [cmd, ...args] = readmeInstallCommand()
  execFileSync(cmd, [...args, ...quiet], { cwd: project, encoding: 'utf8' })
  const out = execFileSync('node', ['-e', loads], { cwd: project, encoding: 'utf8' })
  expect(out.trim()).toBe('function function function')
})

test('the main package packed alone installs but has no binary, as the README says', () => {
  const packDir = tempDir()
  const tarball = execFileSync('npm', ['pack', '--pack-destination', packDir, ...quiet], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop()!
  const project = freshProject()
  execFileSync('npm', ['install', path.join(packDir, tarball), ...quiet], { cwd: project, encoding: 'utf8' })
  const run = spawnSync('node', ['-e', loads], { cwd: project, encoding: 'utf8' })
  expect(run.status).not.toBe(0)
  expect(run.stderr).toMatch(/Cannot find native binding/)
})

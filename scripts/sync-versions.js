#!/usr/bin/env node
// Keeps the platform packages in step with the main package's version.
//
//   node scripts/sync-versions.js                   npm/<platform>/package.json get package.json's
//                                                   version (`npm version <new>` runs this)
//   node scripts/sync-versions.js --check           changes nothing; fails naming what is out of step
//   node scripts/sync-versions.js --optional-deps   also lists every platform package, at exactly that
//                                                   version, in package.json's optionalDependencies
//
// The published main package needs those optionalDependencies (npm installs the one whose
// os/cpu/libc match, and the loader requires it), but the committed package.json cannot have them:
// `npm ci` refuses a lock file without entries for them, and unpublished packages have none. So the
// release workflow adds them right before `npm publish`, and the package test packs the main package
// the same way (`optionalDependencies()` below). index.js carries the version too, for its binary
// version check: `napi build` rewrites it.
'use strict'
const fs = require('fs')
const path = require('path')

const root = path.resolve(__dirname, '..')
const read = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
const format = (json) => JSON.stringify(json, null, 2) + '\n'

/** Each npm/<platform>/package.json, with its path. */
function platformPackages() {
  return fs
    .readdirSync(path.join(root, 'npm'))
    .sort()
    .map((dir) => ({ file: path.join(root, 'npm', dir, 'package.json'), pkg: read(path.join(root, 'npm', dir, 'package.json')) }))
}

/** The main package's optionalDependencies as published: every platform package at its version. */
function optionalDependencies(version = read(path.join(root, 'package.json')).version) {
  return Object.fromEntries(platformPackages().map(({ pkg }) => [pkg.name, version]))
}

function main(args) {
  const mainFile = path.join(root, 'package.json')
  const mainPkg = read(mainFile)
  const changes = platformPackages()
    .filter(({ pkg }) => pkg.version !== mainPkg.version)
    .map(({ file, pkg }) => ({ file, text: format({ ...pkg, version: mainPkg.version }) }))
  if (args.includes('--optional-deps')) {
    changes.push({ file: mainFile, text: format({ ...mainPkg, optionalDependencies: optionalDependencies(mainPkg.version) }) })
  }
  if (args.includes('--check')) {
    if (changes.length) {
      const names = changes.map(({ file }) => path.relative(root, file)).join(', ')
      console.error(`not at version ${mainPkg.version}: ${names} (run node scripts/sync-versions.js)`)
      process.exit(1)
    }
    return
  }
  for (const { file, text } of changes) fs.writeFileSync(file, text)
}

module.exports = { optionalDependencies }
if (require.main === module) main(process.argv.slice(2))

// The README's "Use" example is the file `npx tsc --noEmit -p .` checks (readme-use.mts), word for
// word: an example that stops compiling against index.d.ts fails the suite instead of misleading.
import * as fs from 'fs'
import * as path from 'path'

const root = path.resolve(__dirname, '..', '..')

test('the README "Use" example is __test__/types/readme-use.mts, verbatim', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
  const use = readme.slice(readme.indexOf('\n## Use\n'))
  const example = use.match(/```js\n([\s\S]*?)```\n/)
  expect(example).not.toBeNull()
  expect(fs.readFileSync(path.join(__dirname, 'readme-use.mts'), 'utf8')).toBe(example![1])
})

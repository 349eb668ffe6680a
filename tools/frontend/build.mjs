// Builds the companion's page front end (src/page.js and the widgets' stylesheets) into
// tools/companion/frontend/page-scripts.js and page-scripts.css, which the package ships.
// Run it after changing src/ or the packages: `npm ci && npm run build` in tools/frontend.
// Each file's first line names the SHA-256 of its sources, so a test (tests/test_frontend.py)
// fails when the sources changed and the files were not built again.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const SOURCES = ['package-lock.json', 'src/page.css', 'src/page.js'];
const digest = createHash('sha256');
for (const source of SOURCES) {
  digest.update(readFileSync(source));
}
const banner = `/* Supervisor Companion's page front end, built by tools/frontend/build.mjs from sources with SHA-256 ${digest.digest('hex')} */`;

await build({
  entryPoints: ['src/page.js'],
  outfile: '../companion/frontend/page-scripts.js',
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2019'],
  loader: { '.svg': 'dataurl' },
  legalComments: 'eof',
  banner: { js: banner, css: banner },
  logLevel: 'info'
});

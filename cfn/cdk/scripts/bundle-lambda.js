// npm pack's prepack step: copies the Lambda zip the project's lambda-zip target built
// (<build>/redshift-tasker-<arch>.zip) into lambda/, so the tarball deploys without a C++
// compiler. The build directory is RSTASKER_BUILD_DIR, else the repository's build/.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..', '..', '..');
const build = path.resolve(process.env.RSTASKER_BUILD_DIR || path.join(root, 'build'));
const target = path.resolve(__dirname, '..', 'lambda');
const zips = fs.existsSync(build) ? fs.readdirSync(build).filter((f) => /^redshift-tasker-(x86_64|arm64)\.zip$/.test(f)) : [];
if (zips.length === 0) {
  console.error(
    `bundle-lambda: no redshift-tasker-<arch>.zip in ${build}. Build it first:\n` +
      '  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target lambda-zip\n' +
      '(or set RSTASKER_BUILD_DIR to the build directory that has it).',
  );
  process.exit(1);
}
fs.rmSync(target, { recursive: true, force: true });
fs.mkdirSync(target);
for (const zip of zips) {
  fs.copyFileSync(path.join(build, zip), path.join(target, zip));
  console.error(`bundle-lambda: ${zip} (${fs.statSync(path.join(target, zip)).size} bytes)`);
}

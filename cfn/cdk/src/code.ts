// Where the tasker's Lambda code comes from: the zip `npm pack` bundled into the package
// (lambda/redshift-tasker-<arch>.zip, copied from the project's lambda-zip target), or the
// caller's own lambda.Code.
import * as fs from 'fs';
import * as path from 'path';
import * as lambda from 'aws-cdk-lib/aws-lambda';

/** The directory of the package's bundled zips (beside lib/ in the installed package). */
export const BUNDLED_CODE_DIR = path.join(__dirname, '..', 'lambda');

/** File name of the zip the lambda-zip target makes for an architecture. */
export function lambdaZipName(architecture: lambda.Architecture): string {
  return `redshift-tasker-${architecture.name}.zip`;
}

/**
 * The bundled zip for `architecture` as an asset; throws, saying how to get one, when the
 * package holds none (a checkout that was never packed, or another architecture).
 */
export function bundledCode(architecture: lambda.Architecture, dir: string = BUNDLED_CODE_DIR): lambda.Code {
  const zip = path.join(dir, lambdaZipName(architecture));
  if (!fs.existsSync(zip)) {
    throw new Error(
      `SfnRedshiftTasker: this package holds no Lambda zip for ${architecture.name} (${zip}). ` +
        'Install the packed package (npm pack bundles the zip the lambda-zip target builds: ' +
        '`cmake --build build --target lambda-zip`), choose the architecture it was built for, ' +
        'or pass `code` (e.g. lambda.Code.fromAsset("redshift-tasker-x86_64.zip")).',
    );
  }
  return lambda.Code.fromAsset(zip);
}

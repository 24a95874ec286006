// The example CDK app: `cdk synth --app "node build/examples/app.js"` (or just run it with node,
// which writes cdk.out/). Context (-c key=value) chooses the target and the code:
//   clusterIdentifier, dbName, dbUser   the Redshift target (default redshift-cluster-1, dev, awsuser)
//   lambdaZip                           the tasker's zip (default the one bundled in the package)
//   assetsBucket                        a bucket for the zip instead of the CDK bootstrap bucket,
//                                       with no bootstrap version check (the local stack's moto)
//   reconcile                           "false" leaves out the reconcile schedule
import { App, DefaultStackSynthesizer } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { ExamplesStack } from './stack';

// Run by the cdk CLI, CDK_OUTDIR names the output; run with node, cdk.out/ does.
const app = new App({ outdir: process.env.CDK_OUTDIR ?? 'cdk.out' });
const context = (key: string): string | undefined => app.node.tryGetContext(key);
const lambdaZip = context('lambdaZip');
const assetsBucket = context('assetsBucket');

new ExamplesStack(app, context('stackName') ?? 'RedshiftTaskerExamples', {
  clusterIdentifier: context('clusterIdentifier') ?? 'redshift-cluster-1',
  dbName: context('dbName') ?? 'dev',
  dbUser: context('dbUser') ?? 'awsuser',
  code: lambdaZip ? lambda.Code.fromAsset(lambdaZip) : undefined,
  enableReconcile: context('reconcile') !== 'false',
  synthesizer: assetsBucket
    ? new DefaultStackSynthesizer({ fileAssetsBucketName: assetsBucket, generateBootstrapVersionRule: false })
    : undefined,
  analyticsReporting: false,
});
app.synth();

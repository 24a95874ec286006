// redshift-tasker-cdk: the tasker construct, a task builder for state machines and the SQL custom resources.
export * from './tasker';
export * from './code';
export * from './task';
export * from './resources';

// Custom::RedshiftSql and Custom::RedshiftUser with typed properties: the tasker function is the
// provider (ServiceToken) and answers CloudFormation when the SQL completes.
import { CustomResource, Duration, Token } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { SfnRedshiftTasker } from './tasker';

/** The provider: an SfnRedshiftTasker, its function, or the function's ARN (a stack export, say). */
export type TaskerProvider = SfnRedshiftTasker | lambda.IFunction | string;

function serviceToken(provider: TaskerProvider): string {
  if (typeof provider === 'string') return provider;
  return provider instanceof SfnRedshiftTasker ? provider.lambdaFunction.functionArn : provider.functionArn;
}

/** SQL text, or a list of statements run as one transaction (1 to 40). */
export type Sql = string | string[];

export interface RedshiftSqlProps {
  readonly tasker: TaskerProvider;
  /** Runs on Create. */
  readonly createSql?: Sql;
  /** Runs on Update (a change of any property). */
  readonly updateSql?: Sql;
  /** Runs on Delete. */
  readonly deleteSql?: Sql;
  /** How long CloudFormation waits for the SQL (at most an hour, its default). */
  readonly serviceTimeout?: Duration;
}

function checkSql(owner: string, name: string, sql: Sql | undefined): Sql | undefined {
  if (Array.isArray(sql) && (sql.length < 1 || sql.length > 40)) {
    throw new Error(`${owner}: ${name} takes 1 to 40 statements, not ${sql.length}.`);
  }
  return sql;
}

function checkServiceTimeout(owner: string, timeout: Duration | undefined): Duration | undefined {
  if (timeout && (timeout.toSeconds() < 1 || timeout.toSeconds() > 3600)) {
    throw new Error(`${owner}: serviceTimeout must be from 1 second to 1 hour (CloudFormation's limit).`);
  }
  return timeout;
}

/** Custom::RedshiftSql: SQL run when the resource is created, updated or deleted. */
export class RedshiftSql extends Construct {
  public readonly resource: CustomResource;

  constructor(scope: Construct, id: string, props: RedshiftSqlProps) {
    super(scope, id);
    const owner = `RedshiftSql ${id}`;
    const properties: Record<string, unknown> = {};
    for (const [name, sql] of [['CreateSql', props.createSql], ['UpdateSql', props.updateSql],
      ['DeleteSql', props.deleteSql]] as const) {
      if (sql !== undefined) properties[name] = checkSql(owner, name, sql);
    }
    this.resource = new CustomResource(this, 'Resource', {
      serviceToken: serviceToken(props.tasker),
      resourceType: 'Custom::RedshiftSql',
      properties,
      serviceTimeout: checkServiceTimeout(owner, props.serviceTimeout),
    });
  }
}

export interface RedshiftUserProps {
  readonly tasker: TaskerProvider;
  /** Lowercase letters, digits, `_` and `$`; a change renames the user in place. */
  readonly username: string;
  /**
   * A hash, never the password: `md5` + 32 hex digits (md5 of password + username) or
   * `sha256|<64 hex digest>|<64 hex salt>`. Absent: password disabled.
   */
  readonly passwordHash?: string;
  readonly createDb?: boolean;
  readonly createUser?: boolean;
  readonly unrestrictedSyslogAccess?: boolean;
  /** Existing groups the user joins. */
  readonly groups?: string[];
  /** `YYYY-MM-DD[ HH:MM[:SS]]` (needs a password). */
  readonly validUntil?: string;
  /** A number of connections or 'UNLIMITED'. */
  readonly connectionLimit?: number | 'UNLIMITED';
  /** 60 seconds to 20 days. */
  readonly sessionTimeout?: Duration;
  readonly serviceTimeout?: Duration;
}

/** Custom::RedshiftUser: a database user, created, altered and dropped declaratively. */
export class RedshiftUser extends Construct {
  public readonly resource: CustomResource;
  /** The user's name as the resource reports it (GetAtt Username). */
  public readonly username: string;

  constructor(scope: Construct, id: string, props: RedshiftUserProps) {
    super(scope, id);
    const owner = `RedshiftUser ${id}`;
    const known = (value: string | undefined): value is string => value !== undefined && !Token.isUnresolved(value);
    if (known(props.username) && !/^[a-z_][a-z0-9_$]*$/.test(props.username)) {
      throw new Error(`${owner}: username '${props.username}' may hold lowercase letters, digits, _ and $ only.`);
    }
    if (known(props.passwordHash) && !/^(md5[0-9a-f]{32}|sha256\|[0-9a-f]{64}\|[0-9a-f]{64})$/.test(props.passwordHash)) {
      // Never repeat the value: it might be a password given by mistake.
      throw new Error(
        `${owner}: passwordHash must be md5 + 32 hex digits (md5 of password + username) or ` +
          'sha256|<64 hex digest>|<64 hex salt>; a password in clear text would be stored in the template.',
      );
    }
    if (props.validUntil !== undefined && props.passwordHash === undefined) {
      throw new Error(`${owner}: validUntil needs a passwordHash.`);
    }
    if (known(props.validUntil) && !/^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$/.test(props.validUntil)) {
      throw new Error(`${owner}: validUntil '${props.validUntil}' is not YYYY-MM-DD[ HH:MM[:SS]].`);
    }
    if (typeof props.connectionLimit === 'number' && (!Number.isInteger(props.connectionLimit) || props.connectionLimit < 0)) {
      throw new Error(`${owner}: connectionLimit must be a whole number or 'UNLIMITED'.`);
    }
    const session = props.sessionTimeout?.toSeconds();
    if (session !== undefined && (session < 60 || session > 1728000)) {
      throw new Error(`${owner}: sessionTimeout must be from 60 seconds to 20 days.`);
    }
    const properties: Record<string, unknown> = { username: props.username };
    const optional: Record<string, unknown> = {
      password: props.passwordHash,
      create_db: props.createDb,
      create_user: props.createUser,
      unrestricted_syslog_access: props.unrestrictedSyslogAccess,
      groups: props.groups,
      valid_until: props.validUntil,
      connection_limit: props.connectionLimit,
      session_timeout: session,
    };
    for (const [name, value] of Object.entries(optional)) if (value !== undefined) properties[name] = value;
    this.resource = new CustomResource(this, 'Resource', {
      serviceToken: serviceToken(props.tasker),
      resourceType: 'Custom::RedshiftUser',
      properties,
      serviceTimeout: checkServiceTimeout(owner, props.serviceTimeout),
    });
    this.username = this.resource.getAttString('Username');
  }
}

/**
 * AEF's HTTP responses and live messages, as TypeScript a frontend can import.
 *
 * The seed ticket (runops-v2, "Ticket 003: API Infrastructure for AEF") typed the responses
 * and the WebSocket message in TypeScript; every field it names is here with its name, its
 * type and its optionality unchanged. Conventions:
 *   - `name?: T` (the ticket's optional fields): left out when there is no value, never null.
 *   - `name: T | null` (AEF's own fields): always sent, null when there is no value.
 *   - Fields marked "AEF:" are additions; a client written against the ticket ignores them.
 *     Responses may grow new fields; none that is here disappears or changes type.
 *   - Times are ISO 8601 strings in UTC; ids are UUID strings (log ids are numbers).
 * Each response type names its route(s) in an `@response METHOD PATH STATUS` tag.
 * tests/api/test_contract.py checks every response of every route and every live message (from
 * GET /live and as broadcast on Realtime) against these types field by field, and the OpenAPI
 * spec (docs/openapi.json) against them, so none of the three can drift.
 */

export type ExecutionStatus =
  | 'idle' | 'queued' | 'starting' | 'running' | 'paused' | 'waiting_checkpoint'
  | 'waiting_recovery' | 'cancelling' | 'completed' | 'failed' | 'cancelled';
export type CheckpointStatus = 'pending' | 'approved' | 'rejected' | 'skipped' | 'expired';
export type CheckpointAnswer = 'approve' | 'reject' | 'skip';

// ---------------------------------------------------------------- POST /api/aef/transform
/** @response POST /api/aef/transform 201 */
export interface TransformResponse {
  aefDocument: AEFDocument;
  executionId: string;
  aefDocumentId: string;       // AEF: the stored document, for POST /execute
  warnings: string[];          // AEF: what the transform guessed or could not map
  inputs: PlanInput[];         // AEF: the variables and credentials POST /execute needs
  estimatedStepCount: number;  // AEF
  estimatedDuration: number;   // AEF: seconds
}

/** The SOP or workflow as it was given (its own fields untouched), plus the `aef` section. */
export interface AEFDocument {
  aef: {
    config: AEFExecutionConfig;
    plan: PlanStep[];
    inputs: PlanInput[];  // AEF
    transformedAt: string;
    transformedBy: string;
    version: string;
  };
}

/** AEF: a name the plan reads that no step produces (docs/architecture.md, "Inputs"). */
export interface PlanInput {
  name: string;
  kind: 'variable' | 'credential';  // give it in `variables` / in `secrets`
  requiredBy: string[];             // the ids of the steps that read it
  example?: string;
  description?: string;
}

/** The ticket's AEFExecutionConfig (seed ticket 001) and AEF's settings beside it. */
export interface AEFExecutionConfig {
  checkpoints: CheckpointConfig[];
  secrets: SecretConfig[];
  executionMethod: 'browser_automation' | 'api_integration' | 'manual_step' | 'hybrid';
  estimatedDuration?: number;
  parallelismEnabled?: boolean;
  credentials: WorkflowCredential[];  // AEF
  stepTimeout: number;                // AEF: seconds
  checkpointTimeout: number;          // AEF: seconds
  autoRetryEnabled: boolean;          // AEF
  pauseOnErrors: boolean;             // AEF
  checkpointMode: 'all_steps' | 'risky_steps' | 'none' | 'custom';  // AEF
  customCheckpoints: string[];        // AEF
  checkpointTimeoutAction: 'reject' | 'skip' | 'pause';  // AEF: unanswered checkpoint; see CheckpointChoice
}

export interface CheckpointConfig {
  stepId: string;
  type: 'before_step' | 'decision' | 'manual';
  title: string;
  description: string;
  timeoutSeconds: number;
  defaultAction: CheckpointAnswer | 'pause';
}

export interface SecretConfig {
  id: string;
  name: string;
  description: string;
  type: 'password' | 'api_key' | 'oauth_token' | 'custom';
  required: boolean;
  stepIds: string[];
}

export interface WorkflowCredential {
  id: string;
  serviceType: string;
  label: string;
  description: string | null;
  type: 'email' | 'password' | 'api_key' | 'oauth_token' | 'text' | 'url';
  required: boolean;
  requiredForSteps: string[];
  placeholder: string | null;
  masked: boolean;
}

/** One step of the plan (docs/architecture.md, "Plan"). */
export interface PlanStep {
  id: string;
  label: string;
  kind: string;    // task | compound | loop | decision | end | manual (and newer kinds)
  method: string;  // automated | grounded | manual
  actions: Action[];
  instruction: string | null;
  children: PlanStep[];
  loop: { iterator: string; over: string | null; maxIterations: number;
          exitCondition: string | null } | null;
  decision: { question: string; rule: string | null; yes: PlanStep[]; no: PlanStep[] } | null;
  checkpoint: { type: 'before_step' | 'decision' | 'manual'; title: string; description: string;
                timeoutSeconds: number; defaultAction: CheckpointAnswer | 'pause' } | null;
  risky: boolean;
  credentials: string[];
}

/** A browser action: only `type` is always there. */
export interface Action {
  type: string;  // navigate | click | fill | type | select | ... | act
  selector?: string;
  url?: string;
  value?: string;
  key?: string;
  instruction?: string;
  timeoutMs?: number;
  urlContains?: string;
  variable?: string;
  attribute?: string;
  many?: boolean;
  pattern?: string;
  state?: string;
  credentialField?: string;
  schema?: unknown;
}

// ---------------------------------------------------------------- POST /api/aef/execute
/** @response POST /api/aef/execute 202 */
export interface ExecuteResponse {
  executionId: string;
  websocketUrl: string;
  status: ExecutionStatus;  // AEF
  channel: string;          // AEF: the private Realtime channel, `execution:<id>`
  pollUrl: string;          // AEF: GET /live, the polling fallback
  warnings: string[];       // AEF: given variables or secrets the document does not use
}

// ---------------------------------------------------------------- POST /api/aef/action/{id}
/** @response POST /api/aef/action/{executionId} 200 */
export interface ActionResponse {
  executionId: string;
  status: ExecutionStatus;
  action: string;
  delivered: 'runner' | 'launched';
}

// ---------------------------------------------------------------- POST /api/aef/checkpoint/{id}
/** @response POST /api/aef/checkpoint/{checkpointId} 200 */
export interface CheckpointResponse {
  status: 'success';
  nextAction?: string;  // run_step | skip_step | cancel_execution | take_yes_branch | ...
  decision: 'approved' | 'rejected' | 'skipped';  // AEF: what was recorded
}

// ---------------------------------------------------------------- DELETE /api/aef/stop/{id}
/** @response DELETE /api/aef/stop/{executionId} 200 */
export interface StopResponse {
  status: 'stopped';
  cleanup: 'completed' | 'forced';  // AEF: 'forced' when the runner did not acknowledge
}

// ---------------------------------------------------------------- GET /api/aef/logs/{id}
/** @response GET /api/aef/logs/{executionId} 200 */
export interface LogsResponse {
  logs: ExecutionLogEntry[];
  nextCursor: string | null;  // pass as `after` for the next page; null on the last
}

export interface ExecutionLogEntry {
  id: number;
  timestamp: string;
  level: 'debug' | 'info' | 'warn' | 'error';
  category: string;
  message: string;
  stepId: string | null;
  details: Record<string, unknown> | null;
}

// ---------------------------------------------------------------- live: WS and GET /live/{id}
/**
 * One live message: the payload of each broadcast on the private Realtime channel
 * `execution:<id>` (the broadcast's event is `type`), and what GET /live returns.
 */
export interface LiveMessage {
  type: 'execution_update' | 'checkpoint_required' | 'execution_complete' | 'error';
  timestamp: string;
  execution: {
    id: string;
    status: ExecutionStatus;
    currentStep?: string;
    progress: number;
  };
  browser: {
    screenshot: string;  // a short-lived signed URL (not base64); "" before the first one
    currentUrl: string;  // "" until the browser has a page
    isReady: boolean;
    lastAction?: string;
  };
  logs: ExecutionLogEntry[];
  checkpoints?: CheckpointState[];
  error?: {
    message: string;
    code?: string;  // AEF: a stable reason when there is one (e.g. the launcher's AWS code)
    recovery_options: RecoveryOption[];
    auto_retry_in?: number;  // seconds
  };
  seq: number;  // AEF: gapless per execution; GET /live?after=<seq> catches up
}

export interface CheckpointState {
  id: string;
  stepId: string;
  type: 'before_step' | 'decision' | 'manual' | 'error';
  title: string;
  description: string | null;
  status: CheckpointStatus;
  defaultAction: CheckpointAnswer | 'pause';
  timeoutSeconds: number;
  expiresAt: string;
  response: Record<string, unknown> | null;
  preview: CheckpointPreview | null;  // AEF: null for decision, manual and error checkpoints
  choices: CheckpointChoice[];        // AEF: the answers valid here (table below)
}

/**
 * AEF: what the steps a before_step checkpoint covers are about to do, resolved on the live
 * page when it opened, without doing it. Every action of every covered step (a unit of work:
 * field fills + save) is listed; values have variables filled in and secrets as "••••".
 * A target that is not on the page yet (it appears after an earlier action) is
 * `resolved: false`; approving then runs the step's normal escalation.
 */
export interface CheckpointPreview {
  url: string;                // the page when the checkpoint opened
  screenshot: string | null;  // signed URL: the page with each resolved target outlined
  actions: PreviewAction[];
}

export interface PreviewAction {
  stepId: string;
  kind: string;          // the action type: fill, click, act, navigate ...
  description: string;
  target: PreviewTarget | null;  // null when the action has no element (navigate)
  value: string | null;          // "••••" for a secret, never its value
}

export interface PreviewTarget {
  role: string | null;      // as grounded: the accessible role ...
  name: string | null;      // ... and accessible name
  selector: string | null;
  resolved: boolean;        // exactly one element matched on the page
  box: PreviewBox | null;   // where its outline is drawn on the screenshot (viewport px)
}

export interface PreviewBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * AEF: one answer of POST /checkpoint/{id} and what it does at this checkpoint.
 *
 * | checkpoint  | approve                   | skip                                      | reject                   |
 * |-------------|---------------------------|-------------------------------------------|--------------------------|
 * | before_step | run the step (its unit)   | skip it and the steps it covers, go on;   | stop the whole execution |
 * |             |                           | inside a loop: this item, go on with next |                          |
 * | decision    | take the yes branch       | run neither branch, go on after it        | take the no branch       |
 * | manual      | done by hand, go on       | skip the step, go on                      | stop the whole execution |
 *
 * Nobody answers: `defaultAction` applies. Before_step and manual checkpoints take the
 * document's `config.checkpointTimeoutAction` (reject | skip | pause, default pause): pause
 * makes the execution `paused` keeping its browser for a grace period, then releases it; a
 * resume continues from the last completed step and asks again. A decision takes its no branch.
 */
export interface CheckpointChoice {
  response: CheckpointAnswer;
  label: string;
  meaning: string;
}

export interface RecoveryOption {
  action: 'retry' | 'skip' | 'manual_takeover' | 'stop' | 'resume';
  label: string;
  description?: string;
}

/** @response GET /api/aef/live/{executionId} 200 */
export interface LiveResponse {
  message: LiveMessage;   // the state now
  events: LiveMessage[];  // every message after `?after=<seq>`, in order
  lastSeq: number;
}

// ---------------------------------------------------------------- lists
/** @response GET /api/aef/documents 200 */
export interface DocumentsResponse {
  documents: { id: string; title: string; sopId: string | null; createdAt: string }[];
  nextCursor: string | null;
}

/** @response GET /api/aef/documents/{documentId} 200 */
export interface DocumentResponse {
  id: string;
  title: string;
  sopId: string | null;
  createdAt: string;
  aefDocument: AEFDocument;  // the plan, its checkpoints and inputs are under `aef`
}

/** @response GET /api/aef/executions 200 */
export interface ExecutionsResponse {
  executions: ExecutionSummary[];
  nextCursor: string | null;
}

export interface ExecutionSummary {
  id: string;
  documentId: string;
  documentTitle: string;
  status: ExecutionStatus;
  progress: number;
  currentStep: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  duration: number | null;  // seconds from start to finish (to now while running)
}

// ---------------------------------------------------------------- errors (every route)
/**
 * RFC 9457 problem details, `application/problem+json`, on every 4xx and 5xx.
 * @problem
 */
export interface Problem {
  type: string;  // urn:aef:problem:<code>
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: string;  // docs/architecture.md "Error codes clients see"
  requestId?: string;
  errors?: { field: string; message: string }[];  // validation_failed
}

"""The wire contract: SOP formats, the AEF document and plan, execution state, errors.
The HTTP API's request and response bodies are in `aef.api_models`, built on the bases here.

Three families of models, each with its own config:

- *Source documents* (`Sop*`, `Workflow*`) mirror JSON written by the application AEF
  extends. Their field names are kept exactly as found (snake_case and camelCase mixed);
  unknown fields are kept (`extra="allow"`) so a document survives a round trip, and node
  and action types are plain strings so an unfamiliar type is a warning, not a crash.
- *Wire models* (`_Wire`) are ours: snake_case in Python, camelCase on the wire
  (`alias_generator=to_camel`), dumped with `by_alias=True`. Unknown fields are ignored so
  a reader keeps working when a writer adds a field.
- *Request bodies* (`_Request`, the bodies themselves in `aef.api_models`) forbid unknown
  fields and bound every size, so bad input is a 422 before any use case runs.

Only pydantic and the standard library are imported and schemas are built lazily
(`defer_build`): this module is on every Lambda's cold-start path.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from pydantic.alias_generators import to_camel

# --------------------------------------------------------------------------------------
# Shared vocabulary
# --------------------------------------------------------------------------------------

ExecutionStatus = Literal[
    "idle",
    "queued",
    "starting",
    "running",
    "paused",
    "waiting_checkpoint",
    "waiting_recovery",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
]
StepStatus = Literal[
    "pending", "running", "waiting_checkpoint", "completed", "failed", "skipped", "cancelled"
]
CheckpointStatus = Literal["pending", "approved", "rejected", "skipped", "expired"]
CheckpointType = Literal["before_step", "decision", "manual"]
# The runner also opens `error` checkpoints (recovery questions) at run time.
CheckpointStateType = Literal["before_step", "decision", "manual", "error"]
CheckpointDefault = Literal["approve", "reject", "skip", "pause"]
# What happens when nobody answers a checkpoint in time (per document, `config`).
CheckpointTimeoutAction = Literal["reject", "skip", "pause"]
CheckpointMode = Literal["all_steps", "risky_steps", "none", "custom"]
ExecutionMethod = Literal["browser_automation", "api_integration", "manual_step", "hybrid"]
LogLevel = Literal["debug", "info", "warn", "error"]

StepKind = Literal["task", "compound", "loop", "decision", "end", "manual"]
StepMethod = Literal["automated", "grounded", "manual", "resolver"]
RecoveryAction = Literal["escalate", "fallback", "skip", "next_item", "stop"]
ComputeOperation = Literal["transform", "generate", "llm_call", "filter"]
InputKind = Literal["variable", "credential"]
ActionType = Literal[
    "navigate",
    "click",
    "fill",
    "type",
    "select",
    "check",
    "uncheck",
    "press",
    "scroll",
    "wait",
    "extract",
    "verify",
    "upload",
    "download",
    "act",
]
ACTION_TYPES: frozenset[str] = frozenset(get_args(ActionType))

# Bounded strings for request bodies.
StepId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
SecretName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
]
SecretValue = Annotated[str, StringConstraints(max_length=4096)]


class _Source(BaseModel):
    """A document written by someone else: keep every field, keep the original names."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class _Wire(BaseModel):
    """Our own JSON: camelCase on the wire, lenient to fields added by newer writers."""

    # a field with a default is always sent, so responses document it as required
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", defer_build=True,
        json_schema_serialization_defaults_required=True,
    )


class _Sparse(_Wire):
    """Our JSON where a field without a value is left out, never `null`: the seed ticket
    types such fields `name?: T` (docs/api-contract.ts), and the schema says the same."""

    # no return annotation on purpose: pydantic would document the annotated type (a bare
    # object) instead of the model's fields (`return_type=Any` does the same)
    @model_serializer(mode="wrap")
    def _drop_none(  # type: ignore[no-untyped-def, unused-ignore]
            self, handler: SerializerFunctionWrapHandler):
        return {k: v for k, v in handler(self).items() if v is not None}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        reference: dict[str, Any] = handler(core_schema)
        schema: dict[str, Any] = handler.resolve_ref_schema(reference)
        for name, prop in schema.get("properties", {}).items():
            branches = prop.get("anyOf", [])
            if {"type": "null"} in branches:
                rest = [b for b in branches if b != {"type": "null"}]
                del prop["anyOf"]
                prop.pop("default", None)
                prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
                if name in schema.get("required", []):
                    schema["required"].remove(name)
        return reference


# A string the seed types `string` (never null): a reader takes null as "" from older writers.
Text = Annotated[str, BeforeValidator(lambda value: "" if value is None else value)]


class _Request(BaseModel):
    """A request body: camelCase, unknown fields are a 422."""

    # built at import: FastAPI inspects request bodies when the app is assembled anyway, and a
    # deferred build there trips a pydantic warning about the body field's alias
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# --------------------------------------------------------------------------------------
# SOP format (meta / public / private), e.g. investor-crm-sop-v0.8.json
# --------------------------------------------------------------------------------------


class SopMeta(_Source):
    id: str | None = None
    title: str | None = None
    version: str | None = None
    goal: str | None = None
    purpose: str | None = None
    owner: list[str] | str | None = None


class BrowserInstruction(_Source):
    """One step of a node's `automation.instructions` (added by the seed's AI enhancement)."""

    sequence: int | None = None
    action_type: str | None = None
    description: str | None = None
    stagehand_instruction: str | None = None
    selector_strategies: list[str] | None = None
    expected_result: str | None = None
    wait_conditions: list[str] | None = None
    fallback_actions: list[str] | None = None


class SopAutomation(_Source):
    automatable: bool | None = None
    automation_type: str | None = None  # ui | api | manual | hybrid
    instructions: list[BrowserInstruction] = []
    confidence_level: str | None = None
    estimated_duration_ms: float | None = Field(default=None, ge=0)
    error_recovery: list[str] | None = None
    human_checkpoint: bool | None = None


class SopNode(_Source):
    id: str = Field(min_length=1)
    type: str | None = None  # task | loop | decision | end | ui_interaction | ...
    label: str | None = None
    intent: str | None = None
    context: str | None = None
    id_path: str | None = None
    parent_id: str | None = Field(default=None, alias="parentId")
    children: list[str] | None = None
    iterator: str | None = None
    over: str | None = None  # the list a loop iterates (default: plural of `iterator`)
    exit_condition: str | None = None
    is_branch_root: bool | None = Field(default=None, alias="isBranchRoot")
    question: str | None = None
    rule: str | None = None  # a decision rule (aef.rules grammar)
    automation: SopAutomation | None = None


class SopEdge(_Source):
    source: str
    target: str
    condition: str | None = None
    decision_path: str | None = None


class SopTrigger(_Source):
    type: str | None = None
    config: Any = None
    description: str | None = None


class SopClarification(_Source):
    id: str | None = None
    question: str | None = None
    importance: str | None = None


class SopPublic(_Source):
    nodes: list[SopNode] = []
    edges: list[SopEdge] = []
    triggers: list[SopTrigger] = []
    variables: dict[str, Any] | None = None
    clarification_requests: list[SopClarification] = []


class SopSkill(_Source):
    id: str
    app: str | None = None
    method_type: str | None = None
    viewport: str | None = None
    performance_hint: str | None = None
    variables_in: list[str] | None = None
    variables_out: list[str] | None = None


class SopPrivateStep(_Source):
    node_id: str
    primary_skill: str | None = None
    alt_skills: list[str] | None = None


class SopPrivate(_Source):
    steps: list[SopPrivateStep] = []
    skills: list[SopSkill] = []
    artifacts: list[Any] = []


class SopDocument(_Source):
    meta: SopMeta | None = None
    public: SopPublic
    private: SopPrivate | None = None


# --------------------------------------------------------------------------------------
# JSON workflow format (meta / execution / config), e.g. gmail-investor-crm-workflow.json
# --------------------------------------------------------------------------------------


class WorkflowMeta(_Source):
    id: str | None = None
    title: str | None = None
    version: str | None = None
    goal: str | None = None
    purpose: str | None = None


class WorkflowTarget(_Source):
    url: str | None = None
    selector: str | None = None
    url_contains: str | None = None


class WorkflowAssertConfig(_Source):
    """`assert_element`'s check (the application's workflow schema)."""

    assertion_type: str | None = Field(default=None, alias="assertionType")
    selector: str | None = None
    expected_text: str | None = Field(default=None, alias="expectedText")
    expected_count: int | None = Field(default=None, ge=0, alias="expectedCount")
    timeout: float | None = Field(default=None, ge=0)  # milliseconds
    failure_action: str | None = Field(default=None, alias="failureAction")


class WorkflowAction(_Source):
    """A workflow action in either shape: the documented flat AEF `Action` fields
    (`url`, `selector`, `value`, `timeoutMs`, ...) or the older nested one (`target.url`,
    `data`, `timeout`). Where both are given the flat field wins (aef.transform)."""

    type: str
    instruction: str | None = None
    # flat Action fields (docs/architecture.md, "Plan")
    url: str | None = None
    selector: str | None = None
    value: str | int | float | bool | None = None
    key: str | None = None
    timeout_ms: float | None = Field(default=None, ge=0, alias="timeoutMs")
    url_contains: str | None = Field(default=None, alias="urlContains")
    attribute: str | None = None
    many: bool | None = None
    pattern: str | None = None
    state: str | None = None
    # nested fixture shape
    target: WorkflowTarget | None = None
    data: dict[str, Any] | None = None
    timeout: float | None = Field(default=None, ge=0)  # milliseconds
    # both shapes
    schema_: Any = Field(default=None, alias="schema")
    credential_field: str | None = Field(default=None, alias="credentialField")
    variable: str | None = None
    assert_config: WorkflowAssertConfig | None = Field(default=None, alias="assertConfig")


class WorkflowRetryPolicy(_Source):
    max: int | None = Field(default=None, ge=0)
    backoff_ms: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, alias="backoffMs")
    circuit_breaker: bool | None = Field(default=None, alias="circuitBreaker")


class WorkflowListConfig(_Source):
    """`filter_list` / `extract_list` settings; `inputKey` / `outputKey` name variables."""

    input_key: str | None = Field(default=None, alias="inputKey")
    output_key: str | None = Field(default=None, alias="outputKey")
    prompt_template: str | None = Field(default=None, alias="promptTemplate")


class WorkflowIteratorConfig(_Source):
    list_variable: str | None = Field(default=None, alias="listVariable")
    item_variable: str | None = Field(default=None, alias="itemVariable")
    index_variable: str | None = Field(default=None, alias="indexVariable")
    max_iterations: int | None = Field(default=None, alias="maxIterations")
    continue_on_error: bool | None = Field(default=None, alias="continueOnError")


class WorkflowAssertCondition(_Source):
    type: str | None = None  # selectorVisible | urlMatch | textPresent
    value: str | None = None


class WorkflowNode(_Source):
    id: str = Field(min_length=1)
    type: str | None = None  # atomic_task | compound_task | iterative_loop | list_iterator ...
    label: str | None = None
    intent: str | None = None
    context: str | None = None
    parent_id: str | None = Field(default=None, alias="parentId")
    children: list[str] | None = None
    credentials_required: dict[str, list[str]] | None = Field(
        default=None, alias="credentialsRequired"
    )
    actions: list[WorkflowAction] = []
    condition_schema: dict[str, Any] | None = Field(default=None, alias="conditionSchema")
    outbound_edges: dict[str, str] | None = Field(default=None, alias="outboundEdges")
    assert_conditions: list[WorkflowAssertCondition] | None = Field(
        default=None, alias="assertConditions"
    )
    iterator_config: WorkflowIteratorConfig | None = Field(default=None, alias="iteratorConfig")
    iterator: str | None = None  # iterative_loop: the item name
    over: str | None = None  # iterative_loop: the list variable
    max_iterations: int | None = Field(default=None, alias="maxIterations")  # iterative_loop
    human_escalate: bool | None = Field(default=None, alias="humanEscalate")
    fallback_action: str | None = Field(default=None, alias="fallbackAction")  # error_handler
    retry_policy: WorkflowRetryPolicy | None = Field(default=None, alias="retryPolicy")
    question: str | None = None
    rule: str | None = None  # a decision rule (aef.rules grammar)
    # data_transform / generator / llm_call / filter_list
    transform_function: str | None = Field(default=None, alias="transformFunction")
    input_key: str | None = Field(default=None, alias="inputKey")
    output_key: str | None = Field(default=None, alias="outputKey")
    prompt_template: str | None = Field(default=None, alias="promptTemplate")
    output_schema: Any = Field(default=None, alias="outputSchema")
    list_config: WorkflowListConfig | None = Field(default=None, alias="listConfig")


class WorkflowFlowEdge(_Source):
    from_: str = Field(alias="from")
    to: str
    condition: str | None = None


class WorkflowGraph(_Source):
    nodes: list[WorkflowNode] = []
    flow: list[WorkflowFlowEdge] = []


class WorkflowRequiredTab(_Source):
    name: str | None = None
    url: str | None = None


class WorkflowEnvironment(_Source):
    required_tabs: list[WorkflowRequiredTab] = []


class WorkflowExecution(_Source):
    environment: WorkflowEnvironment | None = None
    workflow: WorkflowGraph
    # Inputs given when the run starts (POST /execute `variables`, e.g. a base URL): their
    # {{placeholders}} are not credentials. A list of names, or names mapped to a description.
    variables: dict[str, Any] | list[str] | None = None


class WorkflowConfig(_Source):
    execution_timeout: float | None = Field(default=None, alias="executionTimeout")
    retry_attempts: int | None = Field(default=None, alias="retryAttempts")
    hybrid_mode: bool | None = Field(default=None, alias="hybridMode")
    pause_on_errors: bool | None = Field(default=None, alias="pauseOnErrors")


class WorkflowDocument(_Source):
    meta: WorkflowMeta | None = None
    execution: WorkflowExecution
    config: WorkflowConfig | None = None


# --------------------------------------------------------------------------------------
# AEF plan (docs/architecture.md, "Plan") and configuration
# --------------------------------------------------------------------------------------


class Action(_Sparse):
    """One concrete browser action. Flat; only `type` is required.

    `{{name}}` placeholders in url/value/selector/instruction are substituted at run time
    from execution variables, then secrets. Unset fields are left out of the JSON.
    """

    type: ActionType
    selector: str | None = None
    url: str | None = None
    value: str | None = None
    key: str | None = None
    instruction: str | None = None
    timeout_ms: int | None = Field(default=None, ge=0)
    url_contains: str | None = None
    variable: str | None = None
    attribute: str | None = None
    many: bool | None = None
    pattern: str | None = None
    state: str | None = None
    credential_field: str | None = None
    schema_: Any = Field(default=None, alias="schema")


class LoopSpec(_Wire):
    iterator: str
    over: str | None = None  # a list variable; None = repeat until the exit condition
    max_iterations: int = Field(default=50, ge=1)
    exit_condition: str | None = None


class StepCheckpoint(_Wire):
    """A checkpoint asked *before* its step runs.

    `covers`: the ids of the steps this one approval authorizes, in run order: the step
    itself, or for a unit of work that commits a record (field writes followed by a save or
    submit) every step from the first write to the commit, which then get no checkpoint of
    their own (docs/architecture.md, "Risk and units of work").
    """

    type: CheckpointType
    title: str
    description: str
    timeout_seconds: int = Field(ge=1)
    default_action: CheckpointDefault
    covers: list[str] = []


class RecoveryPolicy(_Wire):
    """What the runner does when this step fails, or a step nested in it that has no policy of
    its own fails (the innermost policy wins). From a workflow's `error_handler` node (its
    `handler` id), a node's `retryPolicy` and a list iterator's `continueOnError`.

    `retries`: automatic retries of the failed step (None: the runner's default); `backoffMs`:
    the delay before each retry in ms (the last repeats; empty: the runner's default). When
    the retries are used up, `onFailure` applies: `escalate` asks a person (an `error`
    checkpoint showing `instruction`); `fallback` performs `actions` once, then retries the
    failed step once and escalates if it fails again; `skip` marks the failed step skipped and
    goes on; `next_item` abandons the current loop iteration and goes on with the next item
    (on a loop: for failures in its body); `stop` fails the execution. None: the execution's
    default (`pauseOnErrors`).
    """

    retries: int | None = Field(default=None, ge=0, le=10)
    backoff_ms: list[int] = []
    on_failure: RecoveryAction | None = None
    instruction: str | None = None
    actions: list[Action] = []
    handler: str | None = None


class ComputeSpec(_Wire):
    """A step that computes data instead of acting on the page (a workflow's `data_transform`,
    `generator`, `llm_call` or `filter_list` node): performed by the configured resolver
    (`method: resolver`), or by a person (`method: manual`) when none is configured.

    The result is stored in the variable `output`. `input` is the variable path the step
    reads (None: the page and every variable); `instruction` says what to compute; `prompt`
    is the node's prompt template; `function` the node's transform function, kept as a
    description only (AEF never evaluates it); `schema` the expected shape of the result.
    """

    operation: ComputeOperation
    instruction: str
    output: str
    input: str | None = None
    prompt: str | None = None
    function: str | None = None
    schema_: Any = Field(default=None, alias="schema")


class DecisionSpec(_Wire):
    question: str
    rule: str | None = None  # None: a checkpoint asks the person (approve = yes)
    yes: list["PlanStep"] = []
    no: list["PlanStep"] = []


class PlanStep(_Wire):
    id: str
    label: str
    kind: StepKind
    method: StepMethod
    actions: list[Action] = []
    instruction: str | None = None
    children: list["PlanStep"] = []
    loop: LoopSpec | None = None
    decision: DecisionSpec | None = None
    checkpoint: StepCheckpoint | None = None
    risky: bool = False
    credentials: list[str] = []
    recovery: RecoveryPolicy | None = None
    compute: ComputeSpec | None = None


class CheckpointConfig(_Wire):
    """The flat list of planned checkpoints (the same ones the plan steps carry)."""

    step_id: str
    type: CheckpointType
    title: str
    description: str
    timeout_seconds: int
    default_action: CheckpointDefault
    covers: list[str] = []


class PlanInput(_Sparse):
    """A name the plan reads that no step produces: given to `POST /execute` as a `variables`
    entry (`kind: variable`, declared by the document) or a `secrets` entry (`kind:
    credential`). `requiredBy`: the steps that read it."""

    name: str
    kind: InputKind
    required_by: list[str] = []
    example: str | None = None
    description: str | None = None


class SecretConfig(_Wire):
    id: str
    name: str
    description: str
    type: Literal["password", "api_key", "oauth_token", "custom"]
    required: bool = True
    step_ids: list[str] = []


class WorkflowCredential(_Wire):
    id: str
    service_type: str
    label: str
    description: str | None = None
    type: Literal["email", "password", "api_key", "oauth_token", "text", "url"]
    required: bool = True
    required_for_steps: list[str] = []
    placeholder: str | None = None
    masked: bool = False


class AefConfig(_Wire):
    checkpoints: list[CheckpointConfig] = []
    execution_method: ExecutionMethod = "browser_automation"
    secrets: list[SecretConfig] = []
    credentials: list[WorkflowCredential] = []
    step_timeout: int = Field(default=30, ge=1, le=3600)  # seconds
    checkpoint_timeout: int = Field(default=300, ge=10, le=86_400)  # seconds
    auto_retry_enabled: bool = True
    pause_on_errors: bool = True
    checkpoint_mode: CheckpointMode = "risky_steps"
    custom_checkpoints: list[str] = []
    # What an unanswered checkpoint does (before_step and manual ones; a decision takes its
    # no branch): `pause` keeps the work (docs/architecture.md, "Checkpoints a person decides")
    checkpoint_timeout_action: CheckpointTimeoutAction = "pause"


class AefConfigPatch(_Request):
    """The part of `AefConfig` a caller may set; the rest is derived by the transform."""

    execution_method: ExecutionMethod | None = None
    step_timeout: int | None = Field(default=None, ge=1, le=3600)
    checkpoint_timeout: int | None = Field(default=None, ge=10, le=86_400)
    auto_retry_enabled: bool | None = None
    pause_on_errors: bool | None = None
    checkpoint_mode: CheckpointMode | None = None
    custom_checkpoints: list[StepId] | None = Field(default=None, max_length=500)
    checkpoint_timeout_action: CheckpointTimeoutAction | None = None


class AefSection(_Wire):
    config: AefConfig
    plan: list[PlanStep]
    inputs: list[PlanInput] = []
    transformed_at: datetime
    transformed_by: str
    version: str


class AefDocument(_Source):
    """The original SOP or workflow, untouched, plus the `aef` section."""

    meta: dict[str, Any] | None = None
    aef: AefSection


# --------------------------------------------------------------------------------------
# Execution state: log entries, checkpoints, live messages
# --------------------------------------------------------------------------------------


class ExecutionLogEntry(_Wire):
    id: int
    timestamp: datetime
    level: LogLevel
    category: str
    message: str
    step_id: str | None = None
    details: dict[str, Any] | None = None


class PreviewBox(_Wire):
    x: float
    y: float
    width: float
    height: float


class PreviewTarget(_Wire):
    """An action's target as grounded on the live page when the checkpoint opened."""

    role: str | None = None
    name: str | None = None  # the accessible name
    selector: str | None = None
    resolved: bool = False  # exactly one element matched (approving runs normal escalation)
    box: PreviewBox | None = None  # where its outline is drawn (viewport px); null: none


class PreviewAction(_Wire):
    step_id: str
    kind: str  # the action type (fill, click, act ...)
    description: str
    target: PreviewTarget | None = None  # null when the action has no element (navigate)
    value: str | None = None  # variables filled in, secrets as "••••"


class CheckpointPreview(_Wire):
    """What the checkpoint's steps are about to do, resolved without doing it."""

    url: str
    screenshot: str | None = None  # signed URL of the page with the targets outlined
    actions: list[PreviewAction] = []


class CheckpointChoice(_Wire):
    """One answer valid at this checkpoint and what it does."""

    response: Literal["approve", "reject", "skip"]
    label: str
    meaning: str


class CheckpointState(_Wire):
    id: UUID
    step_id: str
    type: CheckpointStateType
    title: str
    description: str | None = None
    status: CheckpointStatus
    default_action: CheckpointDefault
    timeout_seconds: int
    expires_at: datetime | None = None
    response: dict[str, Any] | None = None
    preview: CheckpointPreview | None = None  # null for an error checkpoint
    choices: list[CheckpointChoice] = []


class RecoveryOption(_Sparse):
    action: Literal["retry", "skip", "manual_takeover", "stop", "resume"]
    label: str
    description: str | None = None


class LiveExecution(_Sparse):
    id: UUID
    status: ExecutionStatus
    current_step: str | None = None  # absent until a step has run
    progress: int = Field(default=0, ge=0, le=100)  # percent of plan steps finished


class LiveBrowser(_Sparse):
    screenshot: Text = ""  # short-lived signed URL, never base64; "" before the first one
    current_url: Text = ""  # "" until the browser has a page
    is_ready: bool = False
    last_action: str | None = None


class LiveError(_Sparse):
    """The seed's error block; its keys are snake_case on the wire and stay so."""

    message: str
    code: str | None = None  # stable reason when there is one (e.g. an AWS error code)
    recovery_options: list[RecoveryOption] = Field(default=[], alias="recovery_options")
    auto_retry_in: int | None = Field(default=None, alias="auto_retry_in")  # seconds


class LiveMessage(_Sparse):
    type: Literal["execution_update", "checkpoint_required", "execution_complete", "error"]
    timestamp: datetime
    seq: int = Field(ge=0)
    execution: LiveExecution
    browser: LiveBrowser
    logs: list[ExecutionLogEntry] = []
    checkpoints: list[CheckpointState] | None = None
    error: LiveError | None = None


# --------------------------------------------------------------------------------------
# Errors (every 4xx/5xx body; rendered by aef.http.problem_response)
# --------------------------------------------------------------------------------------


class FieldError(_Wire):
    field: str = Field(description="Where the problem is, e.g. `body.sopId` or `path.id`")
    message: str


class ProblemDetails(_Sparse):
    """RFC 9457 problem details with AEF's stable `code`; more members may be present."""

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str = Field(description="URI naming the problem type: `urn:aef:problem:<code>`")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path")
    code: str = Field(description="Stable machine-readable error code")
    request_id: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="Field-level problems (validation_failed)")

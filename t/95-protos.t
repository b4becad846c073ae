#!/usr/bin/python3
"""The tasker.v1 protos (proto/tasker/v1/*.proto) against the API they must
implement, checked from protoc's descriptors rather than from the text:

  - files, package and syntax; the 10 services and 33 RPCs with their
    request/response types, streaming flags and the permission named in
    each RPC's comment;
  - every enum with its exact values;
  - every message with its exact fields (name, number, type, label,
    proto3 `optional`), written out below from the API description;
  - the C code: protoc-c cannot take proto3 `optional`, so the build runs
    build-aux/protoc-c-optional.awk first. The rewritten files must
    describe the same wire format, protoc-c must compile them (and the
    well-known types they import), the C must compile, and messages
    encoded by python3-protobuf from the original files must come back
    byte-identical after a decode/encode round trip through the C code.

Runs without a build tree: only protoc, protoc-c, gcc and libprotobuf-c.
"""
import glob
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from harness import TOP_SRCDIR, Tap  # noqa: E402

tap = Tap()
try:
    from google.protobuf import descriptor_pb2
except ImportError as e:
    tap.skip_all("python3-protobuf missing: %s" % e)
PROTOC = shutil.which(os.environ.get("PROTOC") or "protoc")
PROTOC_C = shutil.which(os.environ.get("PROTOC_C") or "protoc-c")
CC = shutil.which(os.environ.get("CC") or "gcc") or shutil.which("cc")
AWK = shutil.which(os.environ.get("AWK") or "awk")
if not PROTOC:
    tap.skip_all("protoc not found")

PROTO_DIR = os.path.join(TOP_SRCDIR, "proto")
PKG = "tasker.v1"
FILES = ["common", "tasks", "steps", "templates", "analytics", "dlq", "health", "config",
         "worker"]
REL = ["tasker/v1/%s.proto" % f for f in FILES]
OPT_AWK = os.path.join(TOP_SRCDIR, "build-aux", "protoc-c-optional.awk")
# Directory of google/protobuf/*.proto (libprotobuf-dev).
WKT_DIR = os.environ.get("PROTOBUF_PROTODIR") or "/usr/include"
WKT = ["google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]

# ----------------------------------------------------------------- the API
# Services: file, service, then (rpc, request, response, server-streaming,
# permission or "public").
SERVICES = [
    ("tasks", "TaskService", [
        ("CreateTask", "CreateTaskRequest", "CreateTaskResponse", False, "tasks:create"),
        ("GetTask", "GetTaskRequest", "GetTaskResponse", False, "tasks:read"),
        ("ListTasks", "ListTasksRequest", "ListTasksResponse", False, "tasks:list"),
        ("CancelTask", "CancelTaskRequest", "CancelTaskResponse", False, "tasks:cancel"),
        ("GetTaskContext", "GetTaskContextRequest", "GetTaskContextResponse", False,
         "tasks:context_read"),
        ("GetTaskSummary", "GetTaskSummaryRequest", "GetTaskSummaryResponse", False,
         "tasks:read"),
        ("StreamTaskStatus", "StreamTaskStatusRequest", "TaskStatusUpdate", True,
         "tasks:read"),
    ]),
    ("steps", "StepService", [
        ("GetStep", "GetStepRequest", "GetStepResponse", False, "steps:read"),
        ("ListSteps", "ListStepsRequest", "ListStepsResponse", False, "steps:read"),
        ("ResolveStep", "ResolveStepRequest", "ResolveStepResponse", False, "steps:resolve"),
        ("GetStepAudit", "GetStepAuditRequest", "GetStepAuditResponse", False, "steps:read"),
    ]),
    ("templates", "TemplateService", [
        ("ListTemplates", "ListTemplatesRequest", "ListTemplatesResponse", False,
         "templates:read"),
        ("GetTemplate", "GetTemplateRequest", "GetTemplateResponse", False, "templates:read"),
    ]),
    ("analytics", "AnalyticsService", [
        ("GetPerformanceMetrics", "GetPerformanceMetricsRequest",
         "GetPerformanceMetricsResponse", False, "system:analytics_read"),
        ("GetBottleneckAnalysis", "GetBottleneckAnalysisRequest",
         "GetBottleneckAnalysisResponse", False, "system:analytics_read"),
    ]),
    ("dlq", "DlqService", [
        ("ListEntries", "ListDlqEntriesRequest", "ListDlqEntriesResponse", False, "dlq:read"),
        ("GetEntryByTask", "GetDlqEntryByTaskRequest", "GetDlqEntryByTaskResponse", False,
         "dlq:read"),
        ("UpdateInvestigation", "UpdateDlqInvestigationRequest",
         "UpdateDlqInvestigationResponse", False, "dlq:update"),
        ("GetStats", "GetDlqStatsRequest", "GetDlqStatsResponse", False, "dlq:stats"),
        ("GetInvestigationQueue", "GetDlqInvestigationQueueRequest",
         "GetDlqInvestigationQueueResponse", False, "dlq:read"),
        ("GetStalenessMonitoring", "GetStalenessMonitoringRequest",
         "GetStalenessMonitoringResponse", False, "dlq:read"),
    ]),
    ("health", "HealthService", [
        ("CheckHealth", "HealthRequest", "HealthResponse", False, "public"),
        ("CheckLiveness", "LivenessRequest", "HealthResponse", False, "public"),
        ("CheckReadiness", "ReadinessRequest", "ReadinessResponse", False, "public"),
        ("CheckDetailedHealth", "DetailedHealthRequest", "DetailedHealthResponse", False,
         "public"),
    ]),
    ("config", "ConfigService", [
        ("GetConfig", "GetConfigRequest", "GetConfigResponse", False, "system:config_read"),
    ]),
    ("worker", "WorkerConfigService", [
        ("GetConfig", "WorkerGetConfigRequest", "WorkerGetConfigResponse", False,
         "worker:config_read"),
    ]),
    ("worker", "WorkerHealthService", [
        ("CheckHealth", "WorkerHealthRequest", "WorkerBasicHealthResponse", False, "public"),
        ("CheckLiveness", "WorkerLivenessRequest", "WorkerBasicHealthResponse", False,
         "public"),
        ("CheckReadiness", "WorkerReadinessRequest", "WorkerReadinessResponse", False,
         "public"),
        ("CheckDetailedHealth", "WorkerDetailedHealthRequest", "WorkerDetailedHealthResponse",
         False, "public"),
    ]),
    ("worker", "WorkerTemplateService", [
        ("ListTemplates", "WorkerListTemplatesRequest", "WorkerTemplateListResponse", False,
         "worker:templates_read"),
        ("GetTemplate", "WorkerGetTemplateRequest", "WorkerTemplateResponse", False,
         "worker:templates_read"),
    ]),
]

# Enums: file, name (nested ones as Outer.Inner), prefix, values from 0.
ENUMS = [
    ("common", "TaskState", "TASK_STATE_", [
        "UNSPECIFIED", "PENDING", "INITIALIZING", "ENQUEUING_STEPS", "STEPS_IN_PROCESS",
        "EVALUATING_RESULTS", "WAITING_FOR_DEPENDENCIES", "WAITING_FOR_RETRY",
        "BLOCKED_BY_FAILURES", "COMPLETE", "ERROR", "CANCELLED", "RESOLVED_MANUALLY"]),
    ("common", "StepState", "STEP_STATE_", [
        "UNSPECIFIED", "PENDING", "ENQUEUED", "IN_PROGRESS", "ENQUEUED_FOR_ORCHESTRATION",
        "ENQUEUED_AS_ERROR_FOR_ORCHESTRATION", "WAITING_FOR_RETRY", "COMPLETE", "ERROR",
        "CANCELLED", "RESOLVED_MANUALLY"]),
    ("common", "ResolutionStrategy", "RESOLUTION_STRATEGY_", ["UNSPECIFIED", "AUTO", "MANUAL"]),
    ("common", "StepRunMode", "STEP_RUN_MODE_", ["UNSPECIFIED", "SYNC", "ASYNC"]),
    ("common", "SortDirection", "SORT_DIRECTION_", ["UNSPECIFIED", "ASC", "DESC"]),
    ("steps", "StepManualActionType", "STEP_MANUAL_ACTION_TYPE_", [
        "UNSPECIFIED", "RESET_FOR_RETRY", "RESOLVE_MANUALLY", "COMPLETE_MANUALLY"]),
    ("tasks", "TaskStatusUpdate.UpdateType", "UPDATE_TYPE_", [
        "UNSPECIFIED", "TASK_STATE_CHANGE", "STEP_STATE_CHANGE", "TASK_COMPLETE",
        "TASK_ERROR"]),
    ("dlq", "DlqResolutionStatus", "DLQ_RESOLUTION_STATUS_", [
        "UNSPECIFIED", "PENDING", "MANUALLY_RESOLVED", "PERMANENTLY_FAILED", "CANCELLED"]),
    ("dlq", "DlqReason", "DLQ_REASON_", [
        "UNSPECIFIED", "STALENESS_TIMEOUT", "MAX_RETRIES_EXCEEDED",
        "DEPENDENCY_CYCLE_DETECTED", "WORKER_UNAVAILABLE", "MANUAL_DLQ"]),
    ("dlq", "StalenessHealthStatus", "STALENESS_HEALTH_STATUS_", [
        "UNSPECIFIED", "HEALTHY", "WARNING", "STALE"]),
]

# Messages, per file: "Name: field:[opt |rep ]type#number; ..." ("Name:" alone
# for an empty message). Types: proto scalars, Struct, Timestamp,
# map<k,v>, or a tasker.v1 message/enum name (nested: Outer.Inner).
_POOL = ("active_connections:uint32#1; idle_connections:uint32#2; max_connections:uint32#3; "
         "utilization_percent:double#4; total_acquires:uint64#5; slow_acquires:uint64#6; "
         "acquire_errors:uint64#7; average_acquire_time_ms:double#8; "
         "max_acquire_time_ms:double#9")
_READY5 = ("web_database:HealthCheck#1; orchestration_database:HealthCheck#2; "
           "circuit_breaker:HealthCheck#3; orchestration_system:HealthCheck#4; "
           "command_processor:HealthCheck#5")
_WREADY3 = ("database:WorkerHealthCheck#1; command_processor:WorkerHealthCheck#2; "
            "queue_processing:WorkerHealthCheck#3")
_COUNTS = "; ".join("%s:int64#%d" % (n, i + 1) for i, n in enumerate(
    ["%s_tasks" % s for s in (
        "pending", "initializing", "enqueuing_steps", "steps_in_process", "evaluating_results",
        "waiting_for_dependencies", "waiting_for_retry", "blocked_by_failures", "complete",
        "error", "cancelled", "resolved_manually", "total")]
    + ["%s_steps" % s for s in (
        "pending", "enqueued", "in_progress", "enqueued_for_orchestration",
        "enqueued_as_error_for_orchestration", "waiting_for_retry", "complete", "error",
        "cancelled", "resolved_manually", "total")]))

MESSAGES = {
    "common": """
PaginationRequest: limit:opt int32#1; offset:opt int32#2
PaginationResponse: total:int64#1; count:int32#2; offset:int32#3; has_more:bool#4
BackpressureStatus: active:bool#1; reason:opt string#2; retry_after_seconds:opt int64#3;
  queue_depth:opt int64#4; max_queue_depth:opt int64#5
ErrorDetail: code:string#1; message:string#2; field:opt string#3;
  metadata:map<string,string>#4
UUID: value:string#1
JsonValue: value:Struct#1
TimestampRange: start:opt Timestamp#1; end:opt Timestamp#2
SortSpec: field:string#1; direction:SortDirection#2
""",
    "tasks": """
CreateTaskRequest: name:string#1; namespace:string#2; version:string#3; context:Struct#4;
  correlation_id:opt string#5; initiator:opt string#6; source_system:opt string#7;
  reason:opt string#8; priority:opt int32#9; tags:rep string#10;
  parent_correlation_id:opt string#11
CreateTaskResponse: task:Task#1; backpressure:opt BackpressureStatus#2
GetTaskRequest: task_uuid:string#1; include_steps:bool#2; include_context:bool#3
GetTaskResponse: task:Task#1; steps:rep Step#2; context:opt TaskContext#3
ListTasksRequest: pagination:PaginationRequest#1; namespace:opt string#2; name:opt string#3;
  states:rep TaskState#4; created_at:opt TimestampRange#5; initiator:opt string#6;
  tags:rep string#7; sort:opt SortSpec#8
ListTasksResponse: tasks:rep Task#1; pagination:PaginationResponse#2
CancelTaskRequest: task_uuid:string#1; reason:opt string#2
CancelTaskResponse: task:Task#1; success:bool#2; message:opt string#3
GetTaskContextRequest: task_uuid:string#1
GetTaskContextResponse: context:TaskContext#1
StreamTaskStatusRequest: task_uuid:string#1; include_steps:bool#2
TaskStatusUpdate: update_type:TaskStatusUpdate.UpdateType#1; timestamp:Timestamp#2;
  task_state:opt TaskState#3; step_update:opt StepUpdate#4; error_message:opt string#5
StepUpdate: step_uuid:string#1; name:string#2; state:StepState#3; attempt:int32#4
Task: task_uuid:string#1; name:string#2; namespace:string#3; version:string#4;
  state:TaskState#5; created_at:Timestamp#6; updated_at:Timestamp#7;
  completed_at:opt Timestamp#8; context:Struct#9; initiator:string#10;
  source_system:string#11; reason:string#12; priority:opt int32#13; tags:rep string#14;
  correlation_id:string#15; parent_correlation_id:opt string#16; total_steps:int64#17;
  pending_steps:int64#18; in_progress_steps:int64#19; completed_steps:int64#20;
  failed_steps:int64#21; ready_steps:int64#22; execution_status:string#23;
  recommended_action:string#24; completion_percentage:double#25; health_status:string#26
Step: step_uuid:string#1; task_uuid:string#2; name:string#3; state:StepState#4;
  created_at:Timestamp#5; updated_at:Timestamp#6; completed_at:opt Timestamp#7;
  results:opt Struct#8; dependencies_satisfied:bool#9; retry_eligible:bool#10;
  ready_for_execution:bool#11; total_parents:int32#12; completed_parents:int32#13;
  attempts:int32#14; max_attempts:int32#15; last_failure_at:opt Timestamp#16;
  next_retry_at:opt Timestamp#17; last_attempted_at:opt Timestamp#18;
  backoff_request_seconds:opt int32#19
TaskContext: inputs:Struct#1; outputs:Struct#2; merged:Struct#3
GetTaskSummaryRequest: task_uuid:string#1
GetTaskSummaryResponse: task:TaskSummaryMetadata#1; template:TaskSummaryTemplate#2;
  steps:rep StepSummaryInfo#3; dlq:DlqSummaryInfo#4; links:TaskSummaryLinks#5
TaskSummaryMetadata: task_uuid:string#1; name:string#2; namespace:string#3;
  version:string#4; status:string#5; created_at:string#6; updated_at:string#7;
  completed_at:opt string#8; initiator:string#9; source_system:string#10; reason:string#11;
  correlation_id:string#12; total_steps:int64#13; pending_steps:int64#14;
  in_progress_steps:int64#15; completed_steps:int64#16; failed_steps:int64#17;
  completion_percentage:double#18; health_status:string#19; execution_status:string#20;
  recommended_action:opt string#21
TaskSummaryTemplate: steps:rep TaskSummaryTemplateStep#1
TaskSummaryTemplateStep: name:string#1; step_type:string#2; handler:string#3;
  dependencies:rep string#4; retryable:bool#5; max_attempts:uint32#6
StepSummaryInfo: step_uuid:string#1; name:string#2; current_state:string#3;
  created_at:opt string#4; completed_at:opt string#5; last_attempted_at:opt string#6;
  attempts:int32#7; max_attempts:int32#8; dependencies_satisfied:bool#9;
  retry_eligible:bool#10; error:opt StepErrorSummary#11
StepErrorSummary: error_type:opt string#1; retryable:bool#2; status_code:opt uint32#3
DlqSummaryInfo: in_dlq:bool#1; dlq_reason:opt string#2; resolution_status:opt string#3
TaskSummaryLinks: task:string#1; steps:string#2; dlq:string#3
""",
    "steps": """
GetStepRequest: task_uuid:string#1; step_uuid:string#2
GetStepResponse: step:Step#1
ListStepsRequest: task_uuid:string#1
ListStepsResponse: steps:rep Step#1; pagination:PaginationResponse#2
ResolveStepRequest: task_uuid:string#1; step_uuid:string#2;
  action_type:StepManualActionType#3; performed_by:string#4; reason:string#5;
  result:opt Struct#6; metadata:opt Struct#7
ResolveStepResponse: step:Step#1
GetStepAuditRequest: task_uuid:string#1; step_uuid:string#2
GetStepAuditResponse: audit_records:rep StepAuditRecord#1
StepAuditRecord: audit_uuid:string#1; step_uuid:string#2; transition_uuid:string#3;
  task_uuid:string#4; recorded_at:Timestamp#5; worker_uuid:opt string#6;
  correlation_id:opt string#7; success:bool#8; execution_time_ms:opt int64#9;
  result:opt Struct#10; step_name:string#11; from_state:opt StepState#12;
  to_state:StepState#13
""",
    "templates": """
ListTemplatesRequest: namespace:opt string#1
ListTemplatesResponse: namespaces:rep NamespaceSummary#1; templates:rep TemplateSummary#2;
  total_count:int64#3
NamespaceSummary: name:string#1; description:opt string#2; template_count:int64#3
TemplateSummary: name:string#1; namespace:string#2; version:string#3;
  description:opt string#4; step_count:int64#5
GetTemplateRequest: namespace:string#1; name:string#2; version:string#3
GetTemplateResponse: template:TemplateDetail#1
TemplateDetail: name:string#1; namespace:string#2; version:string#3;
  description:opt string#4; configuration:opt Struct#5; steps:rep StepDefinition#6
StepDefinition: name:string#1; description:opt string#2; default_retryable:bool#3;
  default_max_attempts:int32#4
""",
    "analytics": """
GetPerformanceMetricsRequest: hours:opt int32#1
GetPerformanceMetricsResponse: total_tasks:int64#1; active_tasks:int64#2;
  completed_tasks:int64#3; failed_tasks:int64#4; completion_rate:double#5;
  error_rate:double#6; average_task_duration_seconds:double#7;
  average_step_duration_seconds:double#8; tasks_per_hour:int64#9; steps_per_hour:int64#10;
  system_health_score:double#11; analysis_period_start:string#12; calculated_at:string#13
GetBottleneckAnalysisRequest: limit:opt int32#1; min_executions:opt int32#2
GetBottleneckAnalysisResponse: slow_steps:rep SlowStepInfo#1; slow_tasks:rep SlowTaskInfo#2;
  resource_utilization:ResourceUtilization#3; recommendations:rep string#4
SlowStepInfo: namespace_name:string#1; task_name:string#2; version:string#3;
  step_name:string#4; average_duration_seconds:double#5; max_duration_seconds:double#6;
  execution_count:int64#7; error_count:int64#8; error_rate:double#9;
  last_executed_at:opt string#10
SlowTaskInfo: namespace_name:string#1; task_name:string#2; version:string#3;
  average_duration_seconds:double#4; max_duration_seconds:double#5;
  execution_count:int64#6; average_step_count:double#7; error_count:int64#8;
  error_rate:double#9; last_executed_at:opt string#10
ResourceUtilization: database_pool_utilization:double#1; system_health:SystemHealthCounts#2
SystemHealthCounts: """ + _COUNTS + "\n",
    "dlq": """
ListDlqEntriesRequest: resolution_status:opt DlqResolutionStatus#1; limit:opt int32#2;
  offset:opt int32#3
ListDlqEntriesResponse: entries:rep DlqEntry#1
GetDlqEntryByTaskRequest: task_uuid:string#1
GetDlqEntryByTaskResponse: entry:DlqEntry#1
UpdateDlqInvestigationRequest: dlq_entry_uuid:string#1;
  resolution_status:opt DlqResolutionStatus#2; resolution_notes:opt string#3;
  resolved_by:opt string#4; metadata:opt Struct#5
UpdateDlqInvestigationResponse: success:bool#1; message:string#2; dlq_entry_uuid:string#3
GetDlqStatsRequest:
GetDlqStatsResponse: stats:rep DlqStats#1
GetDlqInvestigationQueueRequest: limit:opt int32#1
GetDlqInvestigationQueueResponse: entries:rep DlqInvestigationQueueEntry#1
GetStalenessMonitoringRequest: limit:opt int32#1
GetStalenessMonitoringResponse: entries:rep StalenessMonitoringEntry#1
DlqEntry: dlq_entry_uuid:string#1; task_uuid:string#2; original_state:string#3;
  dlq_reason:DlqReason#4; dlq_timestamp:Timestamp#5; resolution_status:DlqResolutionStatus#6;
  resolution_timestamp:opt Timestamp#7; resolution_notes:opt string#8;
  resolved_by:opt string#9; task_snapshot:Struct#10; metadata:opt Struct#11;
  created_at:Timestamp#12; updated_at:Timestamp#13
DlqStats: dlq_reason:DlqReason#1; total_entries:int64#2; pending:int64#3;
  manually_resolved:int64#4; permanent_failures:int64#5; cancelled:int64#6;
  oldest_entry:opt Timestamp#7; newest_entry:opt Timestamp#8;
  avg_resolution_time_minutes:opt double#9
DlqInvestigationQueueEntry: dlq_entry_uuid:string#1; task_uuid:string#2;
  original_state:string#3; dlq_reason:DlqReason#4; dlq_timestamp:Timestamp#5;
  minutes_in_dlq:double#6; namespace_name:opt string#7; task_name:opt string#8;
  current_state:opt string#9; time_in_state_minutes:opt int32#10; priority_score:double#11
StalenessMonitoringEntry: task_uuid:string#1; namespace_name:opt string#2;
  task_name:opt string#3; current_state:string#4; time_in_state_minutes:int32#5;
  task_age_minutes:int32#6; staleness_threshold_minutes:int32#7;
  health_status:StalenessHealthStatus#8; priority:int32#9
""",
    "health": """
HealthRequest:
LivenessRequest:
ReadinessRequest:
DetailedHealthRequest:
HealthResponse: status:string#1; timestamp:string#2
ReadinessResponse: status:string#1; timestamp:string#2; checks:ReadinessChecks#3;
  info:HealthInfo#4
DetailedHealthResponse: status:string#1; timestamp:string#2; checks:DetailedHealthChecks#3;
  info:HealthInfo#4
HealthCheck: status:string#1; message:opt string#2; duration_ms:uint64#3
ReadinessChecks: """ + _READY5 + """
DetailedHealthChecks: """ + _READY5 + """; pool_utilization:HealthCheck#6;
  queue_depth:HealthCheck#7; channel_saturation:HealthCheck#8
HealthInfo: version:string#1; environment:string#2; operational_state:string#3;
  web_database_pool_size:uint32#4; orchestration_database_pool_size:uint32#5;
  circuit_breaker_state:string#6; pool_utilization:opt PoolUtilizationInfo#7
PoolUtilizationInfo: tasker_pool:PoolDetail#1; pgmq_pool:PoolDetail#2
PoolDetail: """ + _POOL + "\n",
    "config": """
GetConfigRequest:
GetConfigResponse: metadata:ConfigMetadata#1; auth:SafeAuthConfig#2;
  circuit_breakers:SafeCircuitBreakerConfig#3; database_pools:SafeDatabasePoolConfig#4;
  deployment_mode:string#5; messaging:SafeMessagingConfig#6
ConfigMetadata: timestamp:Timestamp#1; environment:string#2; version:string#3
SafeAuthConfig: enabled:bool#1; verification_method:string#2; jwt_issuer:string#3;
  jwt_audience:string#4; api_key_header:string#5; api_key_count:int32#6;
  strict_validation:bool#7; allowed_algorithms:rep string#8
SafeCircuitBreakerConfig: enabled:bool#1; failure_threshold:uint32#2;
  timeout_seconds:uint32#3; success_threshold:uint32#4
SafeDatabasePoolConfig: web_api_pool_size:uint32#1; web_api_max_connections:uint32#2
SafeMessagingConfig: backend:string#1; queues:rep string#2
""",
    "worker": """
WorkerGetConfigRequest:
WorkerGetConfigResponse: metadata:ConfigMetadata#1; worker_id:string#2;
  worker_type:string#3; auth:SafeAuthConfig#4; messaging:SafeMessagingConfig#5
WorkerHealthRequest:
WorkerLivenessRequest:
WorkerReadinessRequest:
WorkerDetailedHealthRequest:
WorkerBasicHealthResponse: status:string#1; timestamp:Timestamp#2; worker_id:string#3
WorkerReadinessResponse: status:string#1; timestamp:Timestamp#2; worker_id:string#3;
  checks:WorkerReadinessChecks#4; system_info:WorkerSystemInfo#5
WorkerDetailedHealthResponse: status:string#1; timestamp:Timestamp#2; worker_id:string#3;
  checks:WorkerDetailedChecks#4; system_info:WorkerSystemInfo#5;
  distributed_cache:opt DistributedCacheInfo#6
WorkerReadinessChecks: """ + _WREADY3 + """
WorkerDetailedChecks: """ + _WREADY3 + """; event_system:WorkerHealthCheck#4;
  step_processing:WorkerHealthCheck#5; circuit_breakers:WorkerHealthCheck#6
WorkerHealthCheck: status:string#1; message:opt string#2; duration_ms:uint64#3;
  last_checked:Timestamp#4
WorkerSystemInfo: version:string#1; environment:string#2; uptime_seconds:uint64#3;
  worker_type:string#4; database_pool_size:uint32#5; command_processor_active:bool#6;
  supported_namespaces:rep string#7; pool_utilization:opt WorkerPoolUtilizationInfo#8
DistributedCacheInfo: enabled:bool#1; provider:string#2; healthy:bool#3
WorkerPoolUtilizationInfo: tasker_pool:WorkerPoolDetail#1; pgmq_pool:WorkerPoolDetail#2
WorkerPoolDetail: """ + _POOL + """
WorkerListTemplatesRequest: namespace:opt string#1; include_cache_stats:bool#2
WorkerTemplateListResponse: supported_namespaces:rep string#1; template_count:int64#2;
  cache_stats:opt CacheStats#3; worker_capabilities:rep string#4
CacheStats: total_cached:uint64#1; cache_hits:uint64#2; cache_misses:uint64#3;
  cache_evictions:uint64#4; oldest_entry_age_seconds:uint64#5;
  average_access_count:double#6; supported_namespaces:rep string#7
WorkerGetTemplateRequest: namespace:string#1; name:string#2; version:string#3
WorkerTemplateResponse: template:WorkerResolvedTemplate#1;
  handler_metadata:WorkerHandlerMetadata#2; cached:bool#3; cache_age_seconds:opt uint64#4;
  access_count:opt uint64#5
WorkerResolvedTemplate: name:string#1; namespace:string#2; version:string#3;
  description:opt string#4; steps:rep WorkerStepDefinition#5
WorkerStepDefinition: name:string#1; description:opt string#2; retryable:bool#3;
  max_attempts:int32#4
WorkerHandlerMetadata: namespace:string#1; handler_name:string#2; version:string#3;
  description:opt string#4; step_names:rep string#5
""",
}

FIELD_RE = re.compile(r"^(\w+):(opt |rep )?(map<\w+,\w+>|[\w.]+)#(\d+)$")


def parse_messages():
    """{file: {message: [(name, label, type, number)]}} from MESSAGES."""
    out = {}
    for f, text in MESSAGES.items():
        msgs = {}
        cur = None
        for line in text.strip("\n").split("\n"):
            if line.startswith("  "):
                body = line.strip()
            else:
                cur, _, body = line.partition(":")
                msgs[cur] = []
            for item in body.split(";"):
                item = item.strip()
                if not item:
                    continue
                m = FIELD_RE.match(item)
                if not m:
                    raise ValueError("bad spec item %r in %s" % (item, cur))
                msgs[cur].append((m.group(1), (m.group(2) or "").strip(), m.group(3),
                                  int(m.group(4))))
        out[f] = msgs
    return out


SPEC = parse_messages()

# ----------------------------------------------------------------- helpers
T = descriptor_pb2.FieldDescriptorProto
SCALAR = {T.TYPE_DOUBLE: "double", T.TYPE_FLOAT: "float", T.TYPE_INT64: "int64",
          T.TYPE_UINT64: "uint64", T.TYPE_INT32: "int32", T.TYPE_FIXED64: "fixed64",
          T.TYPE_FIXED32: "fixed32", T.TYPE_BOOL: "bool", T.TYPE_STRING: "string",
          T.TYPE_BYTES: "bytes", T.TYPE_UINT32: "uint32", T.TYPE_SFIXED32: "sfixed32",
          T.TYPE_SFIXED64: "sfixed64", T.TYPE_SINT32: "sint32", T.TYPE_SINT64: "sint64"}
WELL_KNOWN = {".google.protobuf.Struct": "Struct", ".google.protobuf.Timestamp": "Timestamp"}


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def load_set(path):
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as fp:
        fds.ParseFromString(fp.read())
    return {f.name: f for f in fds.file}


def index_messages(fdp):
    """{short name (Outer.Inner): DescriptorProto} of one file."""
    out = {}

    def walk(prefix, msgs):
        for m in msgs:
            out[prefix + m.name] = m
            walk(prefix + m.name + ".", m.nested_type)
    walk("", fdp.message_type)
    return out


def type_of(field, msg_index):
    """A field's type in the spec's notation."""
    if field.type in SCALAR:
        return SCALAR[field.type]
    tn = field.type_name
    if tn in WELL_KNOWN:
        return WELL_KNOWN[tn]
    pfx = "." + PKG + "."
    if not tn.startswith(pfx):
        return tn
    short = tn[len(pfx):]
    m = msg_index.get(short)
    if m is not None and m.options.map_entry:
        k, v = (type_of(x, msg_index) for x in m.field)
        return "map<%s,%s>" % (k, v)
    return short


def label_of(field, msg_index):
    if field.label == T.LABEL_REPEATED:
        if field.type == T.TYPE_MESSAGE:
            m = msg_index.get(field.type_name[len(PKG) + 2:])
            if m is not None and m.options.map_entry:
                return ""
        return "rep"
    return "opt" if field.proto3_optional else ""


def fields_of(msg, msg_index):
    return [(f.name, label_of(f, msg_index), type_of(f, msg_index), f.number)
            for f in msg.field]


def diff_lists(want, got):
    w, g = set(want), set(got)
    lines = ["missing: %s" % (x,) for x in sorted(w - g)]
    lines += ["unexpected: %s" % (x,) for x in sorted(g - w)]
    return "\n".join(lines) or None


# ----------------------------------------------------------------- protoc
tmp = tempfile.mkdtemp(prefix="t95-")
try:
    pydir = os.path.join(tmp, "py")
    os.makedirs(pydir)
    desc_path = os.path.join(tmp, "tasker.desc")
    r = run([PROTOC, "-I", PROTO_DIR, "-I", WKT_DIR, "--python_out", pydir,
             "--include_imports", "--include_source_info",
             "--descriptor_set_out", desc_path] + REL)
    if not tap.ok(r.returncode == 0 and not r.stderr.strip(),
                  "protoc compiles proto/tasker/v1/*.proto without warnings",
                  r.stderr.decode("utf-8", "replace")):
        tap.done()
    files = load_set(desc_path)
    mine = {n: f for n, f in files.items() if n.startswith("tasker/")}
    tap.ok(sorted(mine) == sorted(REL), "the package is exactly the nine files",
           diff_lists(REL, mine))
    bad = ["%s: package %r syntax %r" % (n, f.package, f.syntax) for n, f in mine.items()
           if f.package != PKG or f.syntax != "proto3"]
    tap.ok(not bad, "every file is proto3, package tasker.v1", "\n".join(bad))
    deps = sorted({d for f in mine.values() for d in f.dependency} - set(REL))
    tap.ok(deps == sorted(WKT), "imports outside the package are only Struct and Timestamp",
           deps)

    # ------------------------------------------------------------- services
    want_services = {s: (f, rpcs) for f, s, rpcs in SERVICES}
    got_services = {}
    for n, f in mine.items():
        for si, s in enumerate(f.service):
            got_services[s.name] = (n, si, s)
    tap.ok(sorted(got_services) == sorted(want_services) and len(got_services) == 10,
           "the 10 services", diff_lists(want_services, got_services))
    total = sum(len(s.method) for _, _, s in got_services.values())
    tap.ok(total == 33, "33 RPCs in all", total)
    streaming = sorted("%s.%s" % (s.name, m.name) for _, _, s in got_services.values()
                       for m in s.method if m.server_streaming or m.client_streaming)
    tap.ok(streaming == ["TaskService.StreamTaskStatus"],
           "only TaskService.StreamTaskStatus streams (server side)", streaming)
    for sname, (f, rpcs) in want_services.items():
        if sname not in got_services:
            tap.ok(False, "%s exists" % sname)
            continue
        fname, si, svc = got_services[sname]
        comments = {}
        for loc in mine[fname].source_code_info.location:
            p = list(loc.path)
            if len(p) == 4 and p[0] == 6 and p[1] == si and p[2] == 2:
                comments[svc.method[p[3]].name] = loc.leading_comments
        want = [(n, ".%s.%s" % (PKG, i), ".%s.%s" % (PKG, o), st, False)
                for n, i, o, st, _ in rpcs]
        got = [(m.name, m.input_type, m.output_type, m.server_streaming, m.client_streaming)
               for m in svc.method]
        tap.ok(fname == "tasker/v1/%s.proto" % f and got == want,
               "%s (%s.proto): RPCs, types and streaming" % (sname, f),
               diff_lists(want, got) or "in %s" % fname)
        wrong = []
        for n, _, _, _, perm in rpcs:
            c = comments.get(n, "")
            ok = ("Public" in c and "Permission" not in c) if perm == "public" \
                else ("Permission: %s." % perm) in c
            if not ok:
                wrong.append("%s: want %s, comment %r" % (n, perm, c))
        tap.ok(not wrong, "%s: each RPC's comment names its permission" % sname,
               "\n".join(wrong))

    # ---------------------------------------------------------------- enums
    got_enums = {}
    for n, f in mine.items():
        for e in f.enum_type:
            got_enums[e.name] = (n, e)
        for short, m in index_messages(f).items():
            for e in m.enum_type:
                got_enums[short + "." + e.name] = (n, e)
    tap.ok(sorted(got_enums) == sorted(e[1] for e in ENUMS), "the set of enums",
           diff_lists([e[1] for e in ENUMS], got_enums))
    for f, name, prefix, values in ENUMS:
        if name not in got_enums:
            continue
        fname, e = got_enums[name]
        want = [(prefix + v, i) for i, v in enumerate(values)]
        got = [(v.name, v.number) for v in e.value]
        tap.ok(fname == "tasker/v1/%s.proto" % f and got == want,
               "enum %s (%s.proto) values" % (name, f), diff_lists(want, got) or fname)

    # ------------------------------------------------------------- messages
    got_msgs = {}
    for n, f in mine.items():
        idx = index_messages(f)
        for short, m in idx.items():
            if not m.options.map_entry:
                got_msgs[short] = (n, m, idx)
    want_names = [m for msgs in SPEC.values() for m in msgs]
    tap.ok(sorted(got_msgs) == sorted(want_names), "the set of messages (%d)" % len(want_names),
           diff_lists(want_names, got_msgs))
    for f, msgs in SPEC.items():
        for name, want in msgs.items():
            if name not in got_msgs:
                continue
            fname, m, idx = got_msgs[name]
            got = fields_of(m, idx)
            tap.ok(fname == "tasker/v1/%s.proto" % f and got == want,
                   "%s (%s.proto): %d fields" % (name, f, len(want)),
                   diff_lists(want, got) or ("in %s" % fname if fname != "tasker/v1/%s.proto"
                                             % f else "field order differs"))

    # Generated Python loads (used again for the C round trip).
    sys.path.insert(0, pydir)
    pb = {}

    def load_python():
        for f in FILES:
            pb[f] = importlib.import_module("tasker.v1.%s_pb2" % f)
    tap.check("protoc --python_out modules import", load_python)

    # ------------------------------------------------------------- protoc-c
    if not PROTOC_C or not CC or not AWK:
        tap.n += 1
        print("ok %d # SKIP C checks: protoc-c, a C compiler or awk missing" % tap.n)
        tap.done()
    cproto = os.path.join(tmp, "c-proto")
    cout = os.path.join(tmp, "c")
    os.makedirs(os.path.join(cproto, "tasker", "v1"))
    os.makedirs(cout)
    srcs = [os.path.join(PROTO_DIR, p) for p in REL]
    errs = []
    for p, src in zip(REL, srcs):
        r = run([AWK, "-v", "target=" + src, "-f", OPT_AWK] + srcs)
        if r.returncode != 0:
            errs.append("%s: %s" % (p, r.stderr.decode("utf-8", "replace")))
            continue
        with open(os.path.join(cproto, p), "wb") as fp:
            fp.write(r.stdout)
    if not tap.ok(not errs, "protoc-c-optional.awk rewrites every file", "\n".join(errs)):
        tap.done()

    # The rewritten files must mean the same bytes on the wire.
    cdesc = os.path.join(tmp, "c.desc")
    r = run([PROTOC, "-I", cproto, "-I", WKT_DIR, "--descriptor_set_out", cdesc] + REL)
    problems = [r.stderr.decode("utf-8", "replace")] if r.returncode else []
    if not problems:
        cfiles = load_set(cdesc)
        for p in REL:
            a, b = mine[p], cfiles[p]
            ia, ib = index_messages(a), index_messages(b)
            if sorted(ia) != sorted(ib) or len(a.enum_type) != len(b.enum_type):
                problems.append("%s: different messages or enums" % p)
                continue
            for short, ma in ia.items():
                mb = ib[short]
                fb = {f.number: f for f in mb.field}
                for fa in ma.field:
                    g = fb.get(fa.number)
                    where = "%s.%s" % (short, fa.name)
                    if g is None or (g.name, g.type, g.type_name, g.label == T.LABEL_REPEATED) \
                            != (fa.name, fa.type, fa.type_name, fa.label == T.LABEL_REPEATED):
                        problems.append("%s: differs" % where)
                        continue
                    if g.proto3_optional:
                        problems.append("%s: still proto3 optional" % where)
                    if not fa.proto3_optional:
                        if g.HasField("oneof_index") != fa.HasField("oneof_index"):
                            problems.append("%s: oneof membership changed" % where)
                    elif fa.type == T.TYPE_MESSAGE:
                        if g.HasField("oneof_index"):
                            problems.append("%s: optional message put in a oneof" % where)
                    else:
                        if not g.HasField("oneof_index"):
                            problems.append("%s: optional scalar lost its presence" % where)
                        else:
                            od = mb.oneof_decl[g.oneof_index].name
                            members = [x for x in mb.field if x.HasField("oneof_index")
                                       and x.oneof_index == g.oneof_index]
                            if od != "_" + fa.name or len(members) != 1:
                                problems.append("%s: in oneof %s with %d members"
                                                % (where, od, len(members)))
                if len(fb) != len(ma.field):
                    problems.append("%s: field count differs" % short)
    tap.ok(not problems, "the protoc-c copies have the same wire format "
           "(optional scalars/enums/strings -> oneof _<field>, optional messages -> plain)",
           "\n".join(problems))

    r1 = run([PROTOC_C, "-I", cproto, "-I", WKT_DIR, "--c_out", cout] + REL)
    r2 = run([PROTOC_C, "-I", WKT_DIR, "--c_out", cout] + WKT)
    want_out = ["%s.pb-c.%s" % (p[:-len(".proto")], x) for p in REL + WKT for x in "ch"]
    got_out = sorted(os.path.relpath(p, cout)
                     for p in glob.glob(os.path.join(cout, "**", "*.pb-c.*"), recursive=True))
    tap.ok(r1.returncode == 0 and r2.returncode == 0 and got_out == sorted(want_out),
           "protoc-c generates tasker/v1/*.pb-c.[ch] and google/protobuf/"
           "{struct,timestamp}.pb-c.[ch]",
           (r1.stderr + r2.stderr).decode("utf-8", "replace") or diff_lists(want_out, got_out))

    cflags = run(["pkg-config", "--cflags", "libprotobuf-c"]).stdout.decode().split()
    libs = run(["pkg-config", "--libs", "libprotobuf-c"]).stdout.decode().split() \
        or ["-lprotobuf-c"]
    warn = ["-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Wmissing-prototypes",
            "-Wpointer-arith", "-Wformat=2", "-Wundef", "-Wvla", "-Wno-unused-parameter"]
    objs, errs, warns = [], [], []
    for rel in sorted(x for x in want_out if x.endswith(".c")):
        src = os.path.join(cout, rel)
        obj = src[:-2] + ".o"
        r = run([CC, "-c", "-I" + cout] + cflags + warn + [src, "-o", obj])
        if r.returncode != 0:
            errs.append("%s:\n%s" % (rel, r.stderr.decode("utf-8", "replace")))
        elif r.stderr.strip():
            warns.append("%s:\n%s" % (rel, r.stderr.decode("utf-8", "replace")))
        objs.append(obj)
    tap.ok(not errs, "the generated C compiles (gcc -c -I<dir> $(pkg-config --cflags "
           "libprotobuf-c))", "\n".join(errs)[-4000:])
    tap.ok(not errs and not warns, "... without warnings under the project's warning flags",
           "\n".join(warns)[-4000:])

    # Round trip: python (original protos) -> C unpack/pack -> python.
    descs = []
    for h in sorted(glob.glob(os.path.join(cout, "tasker", "v1", "*.pb-c.h"))):
        with open(h) as fp:
            descs += re.findall(r"extern const ProtobufCMessageDescriptor (\w+);", fp.read())
    prog_c = os.path.join(tmp, "roundtrip.c")
    with open(prog_c, "w") as fp:
        fp.write("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n")
        for p in REL:
            fp.write('#include "%s.pb-c.h"\n' % p[:-len(".proto")])
        fp.write("static const ProtobufCMessageDescriptor *const descs[] = {\n")
        fp.write("".join("\t&%s,\n" % d for d in descs))
        fp.write("};\n")
        fp.write(r"""
/* roundtrip NAME < bytes: unpacks a NAME (full proto name) and packs it again. */
int main(int argc, char **argv)
{
	const ProtobufCMessageDescriptor *d = NULL;
	static uint8_t in[1 << 20];
	size_t i, n, len;
	ProtobufCMessage *m;
	uint8_t *out;

	for (i = 0; argc == 2 && i < sizeof descs / sizeof descs[0]; i++)
		if (strcmp(descs[i]->name, argv[1]) == 0)
			d = descs[i];
	if (d == NULL)
		return 2;
	len = fread(in, 1, sizeof in, stdin);
	m = protobuf_c_message_unpack(d, NULL, len, in);
	if (m == NULL)
		return 3;
	n = protobuf_c_message_get_packed_size(m);
	out = malloc(n + 1);
	if (out == NULL || protobuf_c_message_pack(m, out) != n)
		return 4;
	fwrite(out, 1, n, stdout);
	free(out);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
""")
    prog = os.path.join(tmp, "roundtrip")
    r = run([CC, "-I" + cout] + cflags + [prog_c] + objs + ["-o", prog] + libs)
    if not tap.ok(r.returncode == 0, "a round-trip program links against the generated C",
                  r.stderr.decode("utf-8", "replace")[-4000:]):
        tap.done()

    from google.protobuf import struct_pb2, timestamp_pb2  # noqa: E402
    t, s, c, dl, an, h, w, cf = (pb[x] for x in (
        "tasks", "steps", "common", "dlq", "analytics", "health", "worker", "config"))
    ts = timestamp_pb2.Timestamp(seconds=1700000000, nanos=5)
    ctx = struct_pb2.Struct()
    ctx.update({"a": 1, "b": [True, None, "x"], "c": {"d": -2.5}})
    task = t.Task(task_uuid="0190-aa", name="n", namespace="ns", version="1.0.0",
                  state=c.TASK_STATE_STEPS_IN_PROCESS, created_at=ts, updated_at=ts,
                  completed_at=timestamp_pb2.Timestamp(), context=ctx, priority=0,
                  tags=["x", "y"], parent_correlation_id="", total_steps=1 << 40,
                  pending_steps=-1, completion_percentage=12.5)
    step = t.Step(step_uuid="s", state=c.STEP_STATE_ENQUEUED_AS_ERROR_FOR_ORCHESTRATION,
                  results=struct_pb2.Struct(), backoff_request_seconds=0, attempts=3)
    cases = [
        task,
        step,
        t.CreateTaskRequest(name="n", namespace="ns", version="1", context=ctx,
                            correlation_id="", priority=0, tags=["a"], reason=""),
        t.CreateTaskResponse(task=task, backpressure=c.BackpressureStatus(
            active=False, retry_after_seconds=0, queue_depth=0)),
        t.GetTaskResponse(task=task, steps=[step, step], context=t.TaskContext(inputs=ctx)),
        t.ListTasksRequest(pagination=c.PaginationRequest(limit=0, offset=0),
                           states=[c.TASK_STATE_PENDING, c.TASK_STATE_RESOLVED_MANUALLY],
                           created_at=c.TimestampRange(start=ts), namespace=""),
        t.TaskStatusUpdate(update_type=t.TaskStatusUpdate.UPDATE_TYPE_TASK_STATE_CHANGE,
                           timestamp=ts, task_state=c.TASK_STATE_UNSPECIFIED,
                           step_update=t.StepUpdate()),
        t.GetTaskSummaryResponse(task=t.TaskSummaryMetadata(completed_at=""),
                                 steps=[t.StepSummaryInfo(error=t.StepErrorSummary(
                                     status_code=0))], dlq=t.DlqSummaryInfo(in_dlq=True)),
        s.ResolveStepRequest(task_uuid="t", action_type=s.STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY,
                             result=ctx, metadata=struct_pb2.Struct()),
        s.StepAuditRecord(from_state=c.STEP_STATE_UNSPECIFIED, to_state=c.STEP_STATE_COMPLETE,
                          execution_time_ms=0, worker_uuid="", recorded_at=ts),
        c.ErrorDetail(code="E", metadata={"k": "v", "": ""}, field=""),
        dl.ListDlqEntriesRequest(resolution_status=dl.DLQ_RESOLUTION_STATUS_UNSPECIFIED,
                                 limit=0),
        dl.DlqEntry(dlq_reason=dl.DLQ_REASON_MANUAL_DLQ, task_snapshot=ctx, resolved_by="",
                    resolution_timestamp=ts),
        dl.DlqStats(avg_resolution_time_minutes=0.0, oldest_entry=ts),
        dl.GetStalenessMonitoringResponse(entries=[dl.StalenessMonitoringEntry(
            health_status=dl.STALENESS_HEALTH_STATUS_STALE, namespace_name="")]),
        an.GetPerformanceMetricsResponse(completion_rate=99.5, tasks_per_hour=7,
                                         calculated_at="2026-01-01T00:00:00Z"),
        an.GetBottleneckAnalysisResponse(resource_utilization=an.ResourceUtilization(
            system_health=an.SystemHealthCounts(
                **{f.name: f.number for f in an.SystemHealthCounts.DESCRIPTOR.fields})),
            slow_steps=[an.SlowStepInfo(last_executed_at="")]),
        h.DetailedHealthResponse(status="degraded", checks=h.DetailedHealthChecks(
            channel_saturation=h.HealthCheck(message="")), info=h.HealthInfo(
            pool_utilization=h.PoolUtilizationInfo(tasker_pool=h.PoolDetail(
                total_acquires=(1 << 64) - 1)))),
        cf.GetConfigResponse(auth=cf.SafeAuthConfig(allowed_algorithms=["RS256"],
                                                    api_key_count=-1)),
        w.WorkerDetailedHealthResponse(checks=w.WorkerDetailedChecks(
            circuit_breakers=w.WorkerHealthCheck(last_checked=ts)),
            distributed_cache=w.DistributedCacheInfo()),
        w.WorkerTemplateResponse(cached=True, cache_age_seconds=0, access_count=0),
        w.WorkerTemplateListResponse(cache_stats=w.CacheStats(supported_namespaces=["a"])),
    ]
    bad = []
    for msg in cases:
        name = msg.DESCRIPTOR.full_name
        data = msg.SerializeToString(deterministic=True)
        r = run([prog, name], input=data)
        if r.returncode != 0:
            bad.append("%s: roundtrip exited %d" % (name, r.returncode))
            continue
        back = type(msg)()
        back.ParseFromString(r.stdout)
        again = back.SerializeToString(deterministic=True)
        if again != data:
            bad.append("%s: %d bytes in, %d out\nsent: %s\ngot:  %s"
                       % (name, len(data), len(r.stdout), msg, back))
    tap.ok(not bad, "%d messages survive python -> C -> python unchanged, including "
           "zero-valued optional fields" % len(cases), "\n".join(bad))
finally:
    shutil.rmtree(tmp, ignore_errors=True)

tap.done()

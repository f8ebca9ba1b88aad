#!/usr/bin/env bash
# Daily idempotent backfill of yesterday's files through the OpenTrack Flex Template.
#
# Why a Workflow between Cloud Scheduler and Dataflow: a Cloud Scheduler job sends
# the same request body at every run, it cannot compute "yesterday". Something must
# compute the date when the job fires. The simplest such thing is a Cloud Workflows
# workflow: a few lines of YAML, deployed as is (no code, runtime or build, unlike a
# Cloud Function; no machine, unlike a cron host), with a clock (sys.now) and OAuth
# to Google APIs built in. So:
#
#   Cloud Scheduler (daily, fixed body {"argument": "{}"})
#     -> Workflow Executions API: runs workflow $WORKFLOW
#        -> computes DAY = yesterday (UTC), or takes {"date": "YYYY-MM-DD"} when given
#        -> POST https://dataflow.googleapis.com/v1b3/projects/P/locations/R/flexTemplates:launch
#           parameters: input=<EVENTS_PREFIX>dt=DAY/*.jsonl*, write_mode=insert_missing_by_id,
#                       bigquery_project (names of templates/metadata.json only)
#
# insert_missing_by_id makes a rerun of a day add nothing, so a retried or repeated
# launch is harmless. A day with no file fails its launch (a single file pattern must
# match): the failed workflow execution is the alert.
#
# Re-run a given day by hand:
#   gcloud workflows run "$WORKFLOW" --location="$REGION" --project="$PROJECT" --data='{"date": "2026-11-01"}'
#
# This script creates or updates both resources; run it again after any change.
#
# Required environment:
#   PROJECT        project of the Dataflow jobs, the workflow and the scheduler job
#   REGION         Dataflow region; the workflow and the scheduler job live there too
#   TEMPLATE       gs:// path of the built template spec (gcloud dataflow flex-template build)
#   IMAGE          the template image, also the workers' image (sdkContainerImage)
#   EVENTS_PREFIX  prefix of the dated layout, e.g. gs://bucket/events/ (files at <prefix>dt=YYYY-MM-DD/)
#   TEMP_LOCATION  gs:// path for Dataflow's temporary files
#   WORKER_SA      service account of the launcher and worker VMs
#   WORKFLOW_SA    identity of the workflow: needs roles/dataflow.developer, roles/iam.serviceAccountUser
#                  on WORKER_SA and read access to the TEMPLATE file
#   SCHEDULER_SA   identity of the scheduler job: needs roles/workflows.invoker
# Optional:
#   BIGQUERY_PROJECT (default PROJECT), WORKFLOW and JOB (default opentrack-backfill-daily),
#   SCHEDULE (default "30 2 * * *": after yesterday's files are complete), TIME_ZONE (default Etc/UTC).
#   The day computed is always yesterday in UTC, whatever TIME_ZONE says about the schedule.
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION}"
: "${TEMPLATE:?set TEMPLATE (gs://.../opentrack.json)}"
: "${IMAGE:?set IMAGE (the template image)}"
: "${EVENTS_PREFIX:?set EVENTS_PREFIX (gs://bucket/events/)}"
: "${TEMP_LOCATION:?set TEMP_LOCATION (gs://bucket/tmp)}"
: "${WORKER_SA:?set WORKER_SA}"
: "${WORKFLOW_SA:?set WORKFLOW_SA}"
: "${SCHEDULER_SA:?set SCHEDULER_SA}"
BIGQUERY_PROJECT="${BIGQUERY_PROJECT:-$PROJECT}"
WORKFLOW="${WORKFLOW:-opentrack-backfill-daily}"
JOB="${JOB:-opentrack-backfill-daily}"
SCHEDULE="${SCHEDULE:-30 2 * * *}"
TIME_ZONE="${TIME_ZONE:-Etc/UTC}"
EVENTS_PREFIX="${EVENTS_PREFIX%/}/"

source_file="$(mktemp)"
trap 'rm -f "$source_file"' EXIT

# The workflow reads its settings from its environment variables (set below), so its
# source has no shell substitution in it.
cat > "$source_file" <<'YAML'
main:
  params: [args]
  steps:
    - init:
        assign:
          - project: ${sys.get_env("GOOGLE_CLOUD_PROJECT_ID")}
          - region: ${sys.get_env("OPENTRACK_REGION")}
          - day: ${default(map.get(args, "date"), text.substring(time.format(sys.now() - 86400), 0, 10))}
    - check_day:
        switch:
          - condition: ${not(text.match_regex(day, "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))}
            raise: ${"date must be YYYY-MM-DD, got " + day}
    - launch:
        call: http.post
        args:
          url: '${"https://dataflow.googleapis.com/v1b3/projects/" + project + "/locations/" + region + "/flexTemplates:launch"}'
          auth:
            type: OAuth2
          body:
            launchParameter:
              jobName: ${"opentrack-backfill-" + day}
              containerSpecGcsPath: ${sys.get_env("OPENTRACK_TEMPLATE")}
              parameters:
                input: ${sys.get_env("OPENTRACK_EVENTS_PREFIX") + "dt=" + day + "/*.jsonl*"}
                write_mode: insert_missing_by_id
                bigquery_project: ${sys.get_env("OPENTRACK_BIGQUERY_PROJECT")}
              environment:
                sdkContainerImage: ${sys.get_env("OPENTRACK_IMAGE")}
                tempLocation: ${sys.get_env("OPENTRACK_TEMP_LOCATION")}
                serviceAccountEmail: ${sys.get_env("OPENTRACK_WORKER_SA")}
        result: launched
    - done:
        return: ${launched.body.job.id}
YAML

gcloud workflows deploy "$WORKFLOW" \
  --project="$PROJECT" \
  --location="$REGION" \
  --source="$source_file" \
  --service-account="$WORKFLOW_SA" \
  --description="Launches the OpenTrack Flex Template on yesterday's files (insert_missing_by_id)" \
  --set-env-vars="OPENTRACK_REGION=$REGION,OPENTRACK_TEMPLATE=$TEMPLATE,OPENTRACK_IMAGE=$IMAGE,OPENTRACK_EVENTS_PREFIX=$EVENTS_PREFIX,OPENTRACK_TEMP_LOCATION=$TEMP_LOCATION,OPENTRACK_WORKER_SA=$WORKER_SA,OPENTRACK_BIGQUERY_PROJECT=$BIGQUERY_PROJECT"

executions="https://workflowexecutions.googleapis.com/v1/projects/$PROJECT/locations/$REGION/workflows/$WORKFLOW/executions"
if gcloud scheduler jobs describe "$JOB" --project="$PROJECT" --location="$REGION" >/dev/null 2>&1; then
  action=(update http "$JOB" --update-headers="Content-Type=application/json")
else
  action=(create http "$JOB" --headers="Content-Type=application/json")
fi
gcloud scheduler jobs "${action[@]}" \
  --project="$PROJECT" \
  --location="$REGION" \
  --schedule="$SCHEDULE" \
  --time-zone="$TIME_ZONE" \
  --uri="$executions" \
  --http-method=POST \
  --message-body='{"argument": "{}"}' \
  --oauth-service-account-email="$SCHEDULER_SA" \
  --oauth-token-scope="https://www.googleapis.com/auth/cloud-platform" \
  --description="Daily OpenTrack backfill of yesterday (runs workflow $WORKFLOW)"

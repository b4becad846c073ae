# shellcheck shell=bash disable=SC2154
# t/sql/concurrent.sh -- multi-session tests, sourced by t/sql/run.sh
# (uses its pg, tap_* helpers and $work). Sessions are separate psql
# processes; a start barrier (an advisory lock held by one session while
# the others queue for it in shared mode) makes them hit the database at
# the same moment.

cdb=tasker_concurrent
pg postgres -c "CREATE DATABASE $cdb TEMPLATE tasker_template" >/dev/null

q() { pg "$cdb" -At -c "$1"; }   # one query, unaligned output

# wait_until SQL-CONDITION: polls (up to ~20 s) until the condition is true.
wait_until() {
	local i
	for i in $(seq 1 400); do
		[ "$(q "SELECT ($1)::int")" = 1 ] && return 0
		sleep 0.05
	done
	return 1
}

# race N SQL: runs SQL in N sessions released together; each session's
# output goes to $work/race.<i>. Returns once all sessions are done.
race() {
	local n=$1 sql=$2 i pids=""
	rm -f "$work"/race.*
	PGAPPNAME=race_holder pg "$cdb" -At -c "SELECT pg_advisory_lock(4242)" -c "
		DO \$\$ BEGIN
		    FOR i IN 1..400 LOOP
		        EXIT WHEN (SELECT count(*) FROM pg_locks
		                   WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted) >= $n;
		        PERFORM pg_sleep(0.05);
		    END LOOP;
		END \$\$" >/dev/null 2>&1 &
	local holder=$!
	wait_until "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted)" ||
		{ kill "$holder" 2>/dev/null; return 1; }
	for i in $(seq 1 "$n"); do
		pg "$cdb" -At -c "SELECT pg_advisory_lock_shared(4242)" -c "$sql" >"$work/race.$i" 2>&1 &
		pids="$pids $!"
	done
	wait "$holder"
	# shellcheck disable=SC2086
	wait $pids
}

# ------------------------------------------------------------ CAS races
q "SELECT tap.make_task('race', 'race', ARRAY['a'], '{}', 0, '{}', true)" >"$work/t_rows"
q "SELECT tap.make_task('race', 'race', ARRAY['a'], '{}', 0, '{}', false)" >"$work/t_norows"
t_rows=$(cat "$work/t_rows")
t_norows=$(cat "$work/t_norows")
s_rows=$(q "SELECT tap.step('$t_rows', 'a')")
q "SELECT tap.drive('$s_rows', 'enqueued')" >/dev/null

race 8 "SELECT 'task=' || tasker.transition_task_state_atomic('$t_rows', 'pending', 'initializing', gen_random_uuid())
	       || ' implicit=' || tasker.transition_task_state_atomic('$t_norows', 'pending', 'initializing', gen_random_uuid())
	       || ' step=' || tasker.transition_step_state_atomic('$s_rows', ARRAY['enqueued'], 'in_progress')"
all=$(cat "$work"/race.*)
wins() { grep -o "$1=true" <<<"$all" | wc -l; }
losses() { grep -o "$1=false" <<<"$all" | wc -l; }

check_race() { # check_race KEY TABLE-CHECK-SQL
	local w l
	w=$(wins "$1")
	l=$(losses "$1")
	if [ "$w" -ne 1 ] || [ "$l" -ne 7 ]; then
		echo "wins $w, losses $l"
		echo "$all"
		return 1
	fi
	[ "$(q "$2")" = t ] || { echo "table check failed: $2"; return 1; }
}
tap_check "8 concurrent task CAS pending -> initializing: exactly one wins, one row appended" \
	check_race task "SELECT count(*) = 2 AND count(*) FILTER (WHERE most_recent AND to_state = 'initializing') = 1
	                 FROM tasker.task_transitions WHERE task_uuid = '$t_rows'"
tap_check "8 concurrent CAS on a task without transition rows: exactly one wins" \
	check_race implicit "SELECT count(*) = 1 FROM tasker.task_transitions WHERE task_uuid = '$t_norows'"
tap_check "8 concurrent step claims (enqueued -> in_progress): exactly one wins, attempts = 1" \
	check_race step "SELECT (SELECT attempts = 1 AND in_process FROM tasker.workflow_steps WHERE workflow_step_uuid = '$s_rows')
	                 AND (SELECT count(*) = 1 FROM tasker.workflow_step_transitions
	                      WHERE workflow_step_uuid = '$s_rows' AND to_state = 'in_progress')"

# ----------------------------------------------------------- SKIP LOCKED
t_x=$(q "SELECT tap.make_task('skip', 'skip', ARRAY['a'], '{}', 10)")
t_y=$(q "SELECT tap.make_task('skip', 'skip', ARRAY['a'], '{}', 5)")
q "CREATE TABLE public.ctl (done boolean)"

PGAPPNAME=skip_holder pg "$cdb" -At -c "BEGIN" \
	-c "SELECT task_uuid FROM tasker.get_next_ready_tasks(1)" \
	-c "DO \$\$ BEGIN
	        FOR i IN 1..400 LOOP
	            EXIT WHEN EXISTS (SELECT 1 FROM public.ctl);
	            PERFORM pg_sleep(0.05);
	        END LOOP;
	    END \$\$" \
	-c "COMMIT" >"$work/holder.out" 2>&1 &
holder=$!

skip_locked() {
	local got
	wait_until "EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'skip_holder'
	                    AND state = 'active' AND query LIKE 'DO%')" || { echo "holder did not start"; return 1; }
	got=$(q "SELECT string_agg(task_uuid::text, ' ') FROM tasker.get_next_ready_tasks(10)
	         WHERE task_uuid IN ('$t_x', '$t_y')")
	[ "$got" = "$t_y" ] || { echo "second poller got '$got', expected only $t_y"; return 1; }
}
tap_check "get_next_ready_tasks skips a task locked by another poller and still fills the batch" skip_locked

cas_waits_for_lock() {
	local out
	out=$(pg "$cdb" -At -c "SET lock_timeout = '200ms'" \
		-c "SELECT tasker.transition_task_state_atomic('$t_x', 'pending', 'initializing')" 2>&1)
	grep -q 'lock timeout' <<<"$out" || { echo "$out"; return 1; }
}
tap_check "a CAS transition waits for the row lock held by the poller" cas_waits_for_lock

q "INSERT INTO public.ctl VALUES (true)"
wait "$holder"
tap_check "the holder was given the highest-priority task" grep -qx "$t_x" "$work/holder.out"
both_again() {
	local got
	got=$(q "SELECT count(*) FROM tasker.get_next_ready_tasks(10) WHERE task_uuid IN ('$t_x', '$t_y')")
	[ "$got" = 2 ] || { echo "got $got"; return 1; }
}
tap_check "after the holder commits both tasks are offered again" both_again

# ------------------------------------------------- concurrent detectors
q "DO \$\$
   DECLARE t uuid;
   BEGIN
       FOR i IN 1..20 LOOP
           t := tap.make_task('stale', 'stale', ARRAY['a']);
           PERFORM tap.drive_task(t, 'initializing', 'enqueuing_steps', 'steps_in_process');
           PERFORM tap.age_task_state(t, interval '2 hours');
       END LOOP;
   END \$\$" >/dev/null

race 4 "SELECT action_taken FROM tasker.detect_and_transition_stale_tasks(false, 100)"
detectors() {
	local acted entries errors
	acted=$(cat "$work"/race.* | grep -c '^transitioned_to_dlq_and_error$')
	errors=$(cat "$work"/race.* | grep -ci 'error:')
	entries=$(q "SELECT count(*) FROM tasker.tasks_dlq d JOIN tasker.tasks t USING (task_uuid)
	             JOIN tasker.named_tasks nt USING (named_task_uuid) WHERE nt.name = 'stale'")
	if [ "$acted" != 20 ] || [ "$entries" != 20 ] || [ "$errors" != 0 ]; then
		echo "acted $acted, entries $entries, errors $errors"
		cat "$work"/race.*
		return 1
	fi
	[ "$(q "SELECT count(*) FROM tasker.v_task_state_analysis WHERE task_name = 'stale' AND current_state = 'error'")" = 20 ] ||
		{ echo "not every stale task is in error"; return 1; }
}
tap_check "4 concurrent staleness detectors: each stale task handled once (20 entries, 20 transitions, no errors)" detectors

pg postgres -c "DROP DATABASE $cdb" >/dev/null

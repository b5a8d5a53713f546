%% aiida_rabbitmq_stop: how the node stops on SIGTERM, the signal aiida-init stops it with.
%%
%% Erlang's own SIGTERM handler calls init:stop(): every application stops, in the reverse of
%% the order they started in, and the kernel last. The kernel's I/O server supervisor (user_sup)
%% then waits a fixed second before it ends, so that pending console output drains: that second
%% was most of `docker stop`. This handler first drops what RabbitMQ still tracks of connections
%% that have ended (forget_closed_connections), then stops the same applications in the same
%% order (so RabbitMQ's own graceful stop runs: queues, Mnesia and Ra are closed as before), then
%% makes sure the output has left the node (each logger handler synced, the console's I/O server
%% answering after what it was sent before) and halts with status 0.
%%
%% /etc/init/rabbitmq-node installs it before RabbitMQ boots (`-eval ... install()` before
%% `-s rabbit boot`). A SIGTERM that comes before RabbitMQ's boot is complete (its boot state is
%% `ready` just before the listener answers) gets Erlang's own stop, init:stop(), as before. Every
%% other signal is passed on to Erlang's handler. Compiled where RabbitMQ is installed (setup).
-module(aiida_rabbitmq_stop).
-behaviour(gen_event).
-include_lib("rabbit_common/include/rabbit.hrl").
-export([install/0]).
-export([init/1, handle_event/2, handle_call/2, handle_info/2, terminate/2]).

install() ->
    ok = gen_event:swap_handler(erl_signal_server, {erl_signal_handler, []}, {?MODULE, []}).

init(_) ->
    {ok, running}.

handle_event(sigterm, running) ->
    %% Not in the event manager's process: the applications' stop takes a while.
    _ = case catch rabbit_boot_state:get() of
            ready -> spawn(fun stop/0);
            _ -> init:stop()
        end,
    {ok, stopping};
handle_event(sigterm, stopping) ->
    {ok, stopping};
handle_event(Signal, State) ->
    {ok, _} = erl_signal_handler:handle_event(Signal, State),
    {ok, State}.

handle_call(_Request, State) ->
    {ok, ok, State}.

handle_info(_Info, State) ->
    {ok, State}.

terminate(_Args, _State) ->
    ok.

stop() ->
    try
        _ = (catch forget_closed_connections()),
        %% which_applications/1 lists the latest started first.
        _ = [application:stop(App)
             || {App, _, _} <- application:which_applications(infinity), App =/= kernel, App =/= stdlib],
        _ = [catch Module:filesync(Id) || #{id := Id, module := Module} <- logger:get_handler_config()],
        ok = io:put_chars(user, [])
    after
        erlang:halt(0, [{flush, true}])
    end.

%% RabbitMQ tracks each client connection in a table, updated by a process it spawns for each
%% connection's `created` and `closed` event, so a short-lived connection (a readiness probe,
%% `verdi status`) can stay listed after it has ended when the two run out of order. At the stop,
%% RabbitMQ closes every connection it lists for the virtual host, and for such a one it warns
%% that it was "asked to close connection ... Was it already closed?": a warning in a healthy
%% stop's log. So the stop first removes the entries whose connection process has ended, as
%% RabbitMQ itself does once it sees a connection close.
forget_closed_connections() ->
    Node = node(),
    _ = [rabbit_connection_tracking:unregister_tracked(Id)
         || #tracked_connection{id = Id, node = N, pid = Pid} <- rabbit_connection_tracking:list(),
            N =:= Node, not is_process_alive(Pid)],
    ok.

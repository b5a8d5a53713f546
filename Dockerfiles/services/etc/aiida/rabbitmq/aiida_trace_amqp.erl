%% An AMQP session like an AiiDA daemon's, run inside the node by record-loaded-modules' trace
%% boots, so that the modules RabbitMQ serves it with (connections, channels, classic queues,
%% publisher confirms, persistent messages) are among those the boot script loads at once: a
%% daemon's first connection then finds them loaded instead of searching the code path for each.
%%
%% What aiida-core's broker client (kiwipy) does: a connection and a channel with publisher
%% confirms and a prefetch count, a topic exchange, a durable task queue with a message TTL, an
%% exclusive reply queue, a consumer, a persistent message published and acknowledged. Everything
%% it declares is deleted again; the connection closes cleanly.
-module(aiida_trace_amqp).
-export([session/0]).

-include_lib("amqp_client/include/amqp_client.hrl").

-define(TIMEOUT, 60000).

session() ->
    %% The node's AMQP listener, on the port the system picked.
    [Port | _] = [maps:get(port, Info) || {_Ref, Info} <- maps:to_list(ranch:info())],
    {ok, Connection} = amqp_connection:start(#amqp_params_network{host = "127.0.0.1", port = Port}),
    {ok, Channel} = amqp_connection:open_channel(Connection),
    #'confirm.select_ok'{} = amqp_channel:call(Channel, #'confirm.select'{}),
    #'basic.qos_ok'{} = amqp_channel:call(Channel, #'basic.qos'{prefetch_count = 1}),
    Exchange = <<"aiida-trace.tasks">>,
    #'exchange.declare_ok'{} = amqp_channel:call(Channel, #'exchange.declare'{exchange = Exchange, type = <<"topic">>}),
    Arguments = [{<<"x-message-ttl">>, long, ?TIMEOUT}],
    #'queue.declare_ok'{queue = Tasks} =
        amqp_channel:call(Channel, #'queue.declare'{queue = <<"aiida-trace.tasks">>, durable = true, arguments = Arguments}),
    #'queue.declare_ok'{queue = Replies} = amqp_channel:call(Channel, #'queue.declare'{exclusive = true, auto_delete = true}),
    #'queue.bind_ok'{} = amqp_channel:call(Channel, #'queue.bind'{queue = Tasks, exchange = Exchange, routing_key = Tasks}),
    #'basic.consume_ok'{} = amqp_channel:subscribe(Channel, #'basic.consume'{queue = Tasks}, self()),
    receive #'basic.consume_ok'{} -> ok after ?TIMEOUT -> error(no_consume_ok) end,
    Properties = #'P_basic'{delivery_mode = 2, reply_to = Replies, correlation_id = <<"1">>},
    ok = amqp_channel:call(Channel, #'basic.publish'{exchange = Exchange, routing_key = Tasks},
                           #amqp_msg{props = Properties, payload = <<"{}">>}),
    true = amqp_channel:wait_for_confirms(Channel, ?TIMEOUT div 1000),
    receive
        {#'basic.deliver'{delivery_tag = Tag}, #amqp_msg{}} ->
            ok = amqp_channel:cast(Channel, #'basic.ack'{delivery_tag = Tag})
    after ?TIMEOUT ->
        error(no_delivery)
    end,
    #'queue.delete_ok'{} = amqp_channel:call(Channel, #'queue.delete'{queue = Tasks}),
    #'exchange.delete_ok'{} = amqp_channel:call(Channel, #'exchange.delete'{exchange = Exchange}),
    ok = amqp_channel:close(Channel),
    ok = amqp_connection:close(Connection).

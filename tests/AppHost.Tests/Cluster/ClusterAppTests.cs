using AppHost.Tests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;

namespace AppHost.Tests.Cluster;

[Collection(ClusterApp.Name)]
public sealed class ClusterAppTests(ClusterAppFixture app)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task On_the_Redis_Cluster_a_room_message_sent_on_each_node_reaches_the_users_of_every_node()
    {
        var users = new[] { "cleo", "dara", "eli" };
        var received = users.ToDictionary(u => u, _ => new List<string>());
        var connections = new List<HubConnection>();
        try
        {
            for (var i = 0; i < users.Length; i++)
            {
                var connection = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[i], users[i]);
                var texts = received[users[i]];
                connection.On<ChatMessageDto>("message", m =>
                {
                    lock (texts)
                    {
                        texts.Add(m.Text);
                    }
                });
                await connection.InvokeAsync("JoinRoom", "cluster-room");
                connections.Add(connection);
            }

            for (var i = 0; i < users.Length; i++)
            {
                await connections[i].InvokeAsync("SendToRoom", "cluster-room", "from " + app.NodeNames[i]);
            }

            foreach (var user in users)
            {
                var texts = received[user];
                await Eventually.TrueAsync(() =>
                {
                    lock (texts)
                    {
                        return Task.FromResult(app.NodeNames.All(n => texts.Contains("from " + n)));
                    }
                }, Wait, $"{user} gets the room message of every node");
                lock (texts)
                {
                    Assert.Equal(texts.Count, texts.Distinct().Count());
                }
            }
        }
        finally
        {
            foreach (var connection in connections)
            {
                await connection.DisposeAsync();
            }
        }
    }
}

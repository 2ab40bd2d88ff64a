using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>Writes a test node's log to the test's output, prefixed with the node's name, so a failure shows what the servers saw.</summary>
public sealed class XunitLoggerProvider(ITestOutputHelper output, string nodeName) : ILoggerProvider
{
    /// <inheritdoc />
    public ILogger CreateLogger(string categoryName) => new XunitLogger(output, nodeName, categoryName);

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private sealed class XunitLogger(ITestOutputHelper output, string nodeName, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = $"{DateTime.UtcNow:HH:mm:ss.fff} [{nodeName}] {logLevel} {category}: {formatter(state, exception)}";
            if (exception is not null)
            {
                line += Environment.NewLine + exception;
            }

            try
            {
                output.WriteLine(line);
            }
            catch (InvalidOperationException)
            {
                // The test has finished; its output is closed.
            }
        }
    }
}

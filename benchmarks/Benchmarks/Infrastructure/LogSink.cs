using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Benchmarks.Infrastructure;

/// <summary>Collects the nodes' logs (Warning and above, plus the adapter's Information) into one file per run and
/// counts warnings and errors per backplane, so the console stays readable during fault injection.</summary>
internal sealed class LogSink : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly Lock _gate = new();
    private readonly Dictionary<Backplane, (int Warnings, int Errors)> _counts = [];
    private const long MaxBytes = 64L * 1024 * 1024;
    private long _written;

    public LogSink(string path)
    {
        Path = path;
        _writer = new StreamWriter(path, append: false) { AutoFlush = false };
    }

    /// <summary>Where the log goes.</summary>
    public string Path { get; }

    public (int Warnings, int Errors) Counts(Backplane backplane)
    {
        lock (_gate)
        {
            return _counts.GetValueOrDefault(backplane);
        }
    }

    public void Note(string line) => Write($"{DateTime.UtcNow:HH:mm:ss.fff} [bench] {line}");

    public ILoggerProvider ProviderFor(Backplane backplane, string node) => new Provider(this, backplane, node);

    public void Dispose()
    {
        lock (_gate)
        {
            _writer.Dispose();
        }
    }

    private void Record(Backplane backplane, LogLevel level, string line)
    {
        lock (_gate)
        {
            var (warnings, errors) = _counts.GetValueOrDefault(backplane);
            _counts[backplane] = level switch
            {
                LogLevel.Warning => (warnings + 1, errors),
                >= LogLevel.Error => (warnings, errors + 1),
                _ => (warnings, errors),
            };
        }

        Write(line);
    }

    private void Write(string line)
    {
        lock (_gate)
        {
            if (_written > MaxBytes)
            {
                return;
            }

            _written += line.Length + 1;
            try
            {
                _writer.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // A late log line after the scenario ended.
            }
        }
    }

    private sealed class Provider(LogSink sink, Backplane backplane, string node) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(sink, backplane, node, categoryName);

        public void Dispose()
        {
        }
    }

    private sealed class Logger(LogSink sink, Backplane backplane, string node, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = string.Create(CultureInfo.InvariantCulture,
                $"{DateTime.UtcNow:HH:mm:ss.fff} [{node}] {logLevel} {category}: {formatter(state, exception)}");
            if (exception is not null)
            {
                line += " | " + exception.GetType().Name + ": " + exception.Message;
            }

            sink.Record(backplane, logLevel, line);
        }
    }
}
